package soak

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/xml"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
)

// testPKI is a root and leaves it signs: chains that verify, made fresh per test.
type testPKI struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "soak test DAK"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &testPKI{root: root, key: key}
}

// issue makes a chain for a new device key.
func (p *testPKI) issue(t testing.TB, cn string) *pki.Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &pki.Issued{Certificate: leaf, Chain: []*x509.Certificate{leaf, p.root}}
}

// fakeDevice plays a device whose chain reads and step failures the test scripts.
type fakeDevice struct {
	name string
	want *pki.Issued

	mu       sync.Mutex
	held     []*x509.Certificate // what its storage holds
	badReads int                 // reads still to come back spoiled (a noisy line)
	failNext map[string]int      // step -> failures still to give
	reads    int
}

func (d *fakeDevice) Name() string { return d.name }
func (d *fakeDevice) Provision(ctx context.Context, iss device.Issuer, opts device.Options) (*device.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.held = d.want.Chain
	return &device.Result{Issued: d.want}, nil
}

func (d *fakeDevice) ReadChain(ctx context.Context) ([]*x509.Certificate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads++
	if d.badReads > 0 {
		d.badReads--
		return nil, &pki.ChainError{Index: 0, Reason: pki.ErrChainPEM, Detail: "spoiled by the line"}
	}
	if d.held == nil {
		return nil, device.ErrNoChain
	}
	return d.held, nil
}

func (d *fakeDevice) fail(step string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failNext[step] > 0 {
		d.failNext[step]--
		return errors.New(step + " timed out")
	}
	return nil
}

func (d *fakeDevice) Reboot(ctx context.Context) error       { return d.fail(StepReboot) }
func (d *fakeDevice) FactoryReset(ctx context.Context) error { return d.fail(StepReset) }
func (d *fakeDevice) Stats() device.Stats                    { return nil }
func (d *fakeDevice) Close() error                           { return nil }

// fakeIssuer answers Roots; the soak needs nothing else of it when Provision returns the chain.
type fakeIssuer struct{ roots []*x509.Certificate }

func (f *fakeIssuer) Issue(context.Context, device.IssueRequest) (*pki.Issued, error) {
	return nil, errors.New("not here")
}
func (f *fakeIssuer) Lookup(context.Context, crypto.PublicKey) (*device.Known, error) {
	return nil, nil
}
func (f *fakeIssuer) Stored(context.Context, *x509.Certificate) error   { return nil }
func (f *fakeIssuer) Verified(context.Context, *x509.Certificate) error { return nil }
func (f *fakeIssuer) Roots() []*x509.Certificate                        { return f.roots }

// fakeLedger holds records by device key and the problems Check reports.
type fakeLedger struct {
	mu       sync.Mutex
	sigs     map[string]int
	problems []ledger.Problem
	checks   int
}

func (l *fakeLedger) List(ctx context.Context, f ledger.Filter) ([]ledger.Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.sigs[f.DeviceKey]
	if n == 0 {
		n = 1
	}
	return []ledger.Record{{DeviceKey: f.DeviceKey, State: ledger.Verified, Signatures: n}}, nil
}

func (l *fakeLedger) Check(ctx context.Context) ([]ledger.Problem, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checks++
	return l.problems, nil
}

type fixture struct {
	pki  *testPKI
	devs map[string]*fakeDevice
	lg   *fakeLedger
	tgts []Target
}

func newFixture(t testing.TB, names ...string) *fixture {
	f := &fixture{pki: newTestPKI(t), devs: map[string]*fakeDevice{}, lg: &fakeLedger{sigs: map[string]int{}}}
	iss := &fakeIssuer{roots: []*x509.Certificate{f.pki.root}}
	dir := t.TempDir()
	for _, n := range names {
		d := &fakeDevice{name: n, want: f.pki.issue(t, n), failNext: map[string]int{}}
		f.devs[n] = d
		tr := filepath.Join(dir, n+".transcript")
		if err := os.WriteFile(tr, []byte("first line\n"+n+" said: boom\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f.tgts = append(f.tgts, Target{Name: n, Family: "fake", Issuer: iss, Ledger: f.lg, Transcript: tr,
			Open: func(context.Context) (device.Device, error) { return d, nil }})
	}
	return f
}

func keyOf(t *testing.T, is *pki.Issued) string {
	k, err := ledger.KeyHash(is.Certificate.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCleanSoakCountsEveryStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a", "b")
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{Cycles: 5, Seed: 1, Progress: &progress, ProgressEvery: 2}, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	// No power control: verify and reboot per cycle, plus provisioning.
	if got, want := rep.Counters.Runs, 2*(1+5*2); got != want {
		t.Errorf("runs %d, want %d", got, want)
	}
	if rep.Counters.Identity() != 0 || rep.Counters.StepFailures != 0 || rep.Failed(true) {
		t.Errorf("clean soak reports %+v", rep.Counters)
	}
	// A device that reads the issued chain is read once per check.
	if r := f.devs["a"].reads; r != 1+5*2 {
		t.Errorf("device a read %d times, want %d (one read per check)", r, 1+5*2)
	}
	if n := strings.Count(progress.String(), "\n"); n != 3 { // cycles 2, 4, 5
		t.Errorf("progress lines:\n%s", progress.String())
	}
}

func TestOrdinaryFailureIsRetriedAndCountedAsFlake(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a")
	f.devs["a"].failNext[StepReboot] = 1 // once
	f.devs["a"].badReads = 1             // one read spoiled by the line
	rep, err := Run(context.Background(), Config{Cycles: 2, Seed: 1}, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	s := stepNamed(t, rep, StepReboot)
	if s.Retries != 1 || s.Flakes != 1 || s.Failures != 0 || s.Runs != 2 {
		t.Errorf("reboot: %+v, want 2 runs, 1 retry, 1 flake, 0 failures", s)
	}
	if rep.Counters.Identity() != 0 {
		t.Errorf("a spoiled read became an identity failure: %+v", rep.Counters)
	}
}

func TestStepFailingEveryRetryIsAFailureWithTranscript(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a")
	f.devs["a"].failNext[StepReboot] = 3 // the attempt and both retries
	rep, err := Run(context.Background(), Config{Cycles: 2, Seed: 1}, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	s := stepNamed(t, rep, StepReboot)
	if s.Failures != 1 || s.Retries != 2 || s.First == nil || s.First.Cycle != 1 {
		t.Fatalf("reboot: %+v, want 1 failure at cycle 1 after 2 retries", s)
	}
	if !strings.Contains(s.First.Transcript, "a said: boom") || !strings.Contains(s.First.Error, "timed out") {
		t.Errorf("first failure %+v lacks the transcript excerpt or the error", s.First)
	}
	if rep.Failed(false) || !rep.Failed(true) {
		t.Errorf("a step failure is fatal only when strict")
	}
	if rep.FailuresByCycle[1] != 1 {
		t.Errorf("failures by cycle %v", rep.FailuresByCycle)
	}
}

func TestChangedChainIsCountedNotRetriedAndStopsTheTarget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a", "b")
	other := f.pki.issue(t, "someone else")
	cfg := Config{Cycles: 4, Seed: 1, AfterStep: func(target string, cycle int, step string) {
		if target == "a" && cycle == 2 && step == StepVerify {
			d := f.devs["a"]
			d.mu.Lock()
			d.held = other.Chain // a different valid chain, written between steps
			d.mu.Unlock()
		}
	}}
	rep, err := Run(context.Background(), cfg, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counters.ChangedChains != 1 || rep.Counters.TornChains != 0 || !rep.Failed(false) {
		t.Fatalf("counters %+v, want exactly one changed chain and a failed soak", rep.Counters)
	}
	a := targetNamed(t, rep, "a")
	if a.Cycles != 1 || !strings.Contains(a.Stopped, KindChanged) {
		t.Errorf("target a: %d cycles, stopped %q; want stopped in cycle 2", a.Cycles, a.Stopped)
	}
	if rb := stepOf(a, StepReboot); rb.Retries != 0 {
		t.Errorf("the changed chain was retried: %+v", rb)
	}
	if b := targetNamed(t, rep, "b"); b.Cycles != 4 {
		t.Errorf("target b stopped too: %+v", b)
	}
}

func TestLostChainIsTorn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a")
	cfg := Config{Cycles: 3, Seed: 1, AfterStep: func(target string, cycle int, step string) {
		if cycle == 1 && step == StepVerify {
			d := f.devs["a"]
			d.mu.Lock()
			d.held = nil
			d.mu.Unlock()
		}
	}}
	rep, err := Run(context.Background(), cfg, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counters.TornChains != 1 || rep.Counters.ChangedChains != 0 {
		t.Fatalf("counters %+v, want one torn chain", rep.Counters)
	}
}

func TestSecondSignatureAndLedgerProblemCountedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a")
	f.lg.sigs[keyOf(t, f.devs["a"].want)] = 2
	f.lg.problems = []ledger.Problem{{Kind: "budget_mismatch", Detail: "used 3, records count 2"}}
	rep, err := Run(context.Background(), Config{Cycles: 3, Seed: 1}, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counters.DoubleSignatures != 1 || rep.Counters.LedgerInconsistencies != 1 {
		t.Fatalf("counters %+v, want 1 double signature and 1 ledger inconsistency (each seen every cycle, counted once)", rep.Counters)
	}
	if f.lg.checks < 3 {
		t.Errorf("ledger checked %d times over 3 cycles", f.lg.checks)
	}
}

func TestReportFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a", "b")
	f.devs["b"].failNext[StepReboot] = 3
	rep, err := Run(context.Background(), Config{Cycles: 3, Seed: 99, Faults: []string{FaultNoise}}, f.tgts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := rep.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	checkReportFiles(t, dir, []string{"a", "b"}, map[string]int{"soak.b/reboot": 1})
}

// checkReportFiles reads soak.json, the JUnit XML and the HTML page back. failing names the
// test cases (suite/case) that must fail, with how many runs failed.
func checkReportFiles(t *testing.T, dir string, targets []string, failing map[string]int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "soak.json"))
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(data, &js); err != nil {
		t.Fatalf("soak.json: %v", err)
	}
	counters, _ := js["counters"].(map[string]any)
	for _, k := range []string{"torn_chains", "changed_chains", "double_signatures", "ledger_inconsistencies"} {
		if _, ok := counters[k]; !ok {
			t.Errorf("soak.json counters lack %s: %v", k, counters)
		}
	}
	if _, ok := js["seed"]; !ok {
		t.Error("soak.json does not name the seed")
	}

	raw, err := os.ReadFile(filepath.Join(dir, "soak-junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &suites); err != nil {
		t.Fatalf("JUnit XML does not parse: %v", err)
	}
	seen := map[string]bool{}
	fails := 0
	for _, s := range suites.Suites {
		seen[s.Name] = true
		for _, c := range s.Cases {
			id := s.Name + "/" + c.Name
			_, want := failing[id]
			if (c.Failure != nil) != want {
				t.Errorf("JUnit case %s: failure %+v, want failing %v", id, c.Failure, want)
			}
			if c.Failure != nil {
				fails++
			}
		}
	}
	for _, n := range append([]string{"identity"}, targets...) {
		if !seen["soak."+n] {
			t.Errorf("JUnit has no suite soak.%s (has %v)", n, seen)
		}
	}
	if suites.Failures != fails {
		t.Errorf("JUnit says %d failures, its cases %d", suites.Failures, fails)
	}

	page, err := os.ReadFile(filepath.Join(dir, "soak.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	if strings.Count(html, "<svg") < 2 || !strings.Contains(html, "Failures over cycles") {
		t.Errorf("the page lacks its plots")
	}
	for _, bad := range []string{"<script", "src=", "href=", "<link", "@import"} {
		if strings.Contains(html, bad) {
			t.Errorf("the page loads something (%q): it must stand alone", bad)
		}
	}
}

func TestConfigRefusesUnknownFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "a")
	if _, err := Run(context.Background(), Config{Cycles: 1, Faults: []string{"lightning"}}, f.tgts); err == nil || !strings.Contains(err.Error(), "lightning") {
		t.Errorf("unknown fault: %v", err)
	}
	if _, err := Run(context.Background(), Config{Cycles: 0}, f.tgts); err == nil {
		t.Error("0 cycles accepted")
	}
}

func TestSameSeedSameChoices(t *testing.T) {
	t.Parallel()
	a, b := targetRand(42, "dut1"), targetRand(42, "dut1")
	c := targetRand(42, "dut2")
	same, differ := true, false
	for range 20 {
		x, y, z := a.IntN(1000), b.IntN(1000), c.IntN(1000)
		same = same && x == y
		differ = differ || x != z
	}
	if !same || !differ {
		t.Errorf("seeded choices: same seed and target agree %v, other target differs %v", same, differ)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 %v", p)
	}
	if p := percentile(d, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 %v", p)
	}
	if p := percentile(d[:1], 0.99); p != time.Millisecond {
		t.Errorf("p99 of one %v", p)
	}
}

func stepNamed(t *testing.T, rep *Report, name string) *StepStats {
	t.Helper()
	for _, s := range rep.Steps {
		if s.Step == name {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", name, rep.Steps)
	return nil
}

func targetNamed(t *testing.T, rep *Report, name string) *TargetReport {
	t.Helper()
	for _, tr := range rep.Targets {
		if tr.Name == name {
			return tr
		}
	}
	t.Fatalf("no target %s", name)
	return nil
}

func stepOf(tr *TargetReport, name string) *StepStats {
	for _, s := range tr.Steps {
		if s.Step == name {
			return s
		}
	}
	return &StepStats{}
}

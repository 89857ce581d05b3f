package targets_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/station"
	"hilbench/targets"
	"hilbench/targets/ack"
	"hilbench/targets/acs"
	"hilbench/targets/simbench"
)

func acsBench(t testing.TB, n int) *simbench.Bench {
	t.Helper()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: n, BootDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

func ackBench(t testing.TB, native, external int) *simbench.ACKBench {
	t.Helper()
	sb, err := simbench.StartACK(t.TempDir(), simbench.ACKOptions{Modules: native, External: external, BootDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// simDevice is one simulated device of some family, and where it keeps its key and chain.
type simDevice struct {
	bench              *bench.Bench
	target             *bench.Target
	keyFile, chainFile string
}

// families are the device families the exactly-once rules are checked on: the same test, no
// family branches, through targets.Open.
var families = []struct {
	name   string
	keyGen string // the family's key generation step
	start  func(t *testing.T) *simDevice
}{
	{"acs", acs.StepKeyGen, func(t *testing.T) *simDevice {
		sb := acsBench(t, 1)
		d := sb.Devices[0]
		return &simDevice{sb.Bench, &sb.Bench.Targets[0], filepath.Join(d.DHADir(), "dha_key.pem"), filepath.Join(d.DHADir(), "dha_chain.pem")}
	}},
	{"ack", ack.StepKeyGen, func(t *testing.T) *simDevice {
		sb := ackBench(t, 1, 0)
		m := sb.Modules[0]
		return &simDevice{sb.Bench, &sb.Bench.Targets[0], m.KeyPath(), m.CertPath()}
	}},
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// open opens the device as a new run would.
func (s *simDevice) open(t *testing.T) device.Device {
	t.Helper()
	prof, err := station.LoadProfile(s.bench)
	if err != nil {
		t.Fatal(err)
	}
	d, err := targets.Open(testCtx(t), s.target, targets.Env{Dir: t.TempDir(), Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// provision is one run: open, Provision, close. It returns the steps it went through.
func (s *simDevice) provision(t *testing.T, iss device.Issuer, opts device.Options) (*device.Result, []string, error) {
	t.Helper()
	d := s.open(t)
	defer d.Close()
	var steps []string
	progress := opts.Progress
	opts.Progress = func(target, step string) {
		steps = append(steps, step)
		if progress != nil {
			progress(target, step)
		}
	}
	res, err := d.Provision(testCtx(t), iss, opts)
	return res, steps, err
}

func (s *simDevice) read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func wrote(steps []string) bool {
	return slices.Contains(steps, "upload") || slices.Contains(steps, "set_cert") || slices.Contains(steps, "commit")
}

func TestOpenPicksTheDriverByFamily(t *testing.T) {
	acsB := acsBench(t, 1)
	ackB := ackBench(t, 1, 1)
	ctx := testCtx(t)
	open := func(tg *bench.Target) device.Device {
		d, err := targets.Open(ctx, tg, targets.Env{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	if d, ok := open(&acsB.Bench.Targets[0]).(*acs.Session); !ok {
		t.Errorf("acs target opened as %T", d)
	} else if _, ok := device.Device(d).(device.Flasher); !ok {
		t.Error("an ACS session is not a Flasher")
	}
	native := open(&ackB.Bench.Targets[0])
	if _, ok := native.(*ack.Session); !ok {
		t.Errorf("native ack target opened as %T", native)
	}
	id, ok := native.(device.Identifier)
	if !ok {
		t.Fatalf("%T is not an Identifier", native)
	}
	if dsn, err := id.DeviceID(ctx); err != nil || dsn != ackB.Modules[0].DSN() {
		t.Errorf("DeviceID = %q, %v; the module's DSN is %q", dsn, err, ackB.Modules[0].DSN())
	}
	if st := native.Stats(); len(st) != 10 || st["frames_sent"] == 0 || st["rx_bytes"] == 0 {
		t.Errorf("stats %v", st)
	}
	if d := open(&ackB.Bench.Targets[1]); func() bool { _, ok := d.(*ack.ExternalSession); return !ok }() {
		t.Errorf("external ack target opened as %T", d)
	}
	bad := acsB.Bench.Targets[0]
	bad.Family = "zigbee"
	if d, err := targets.Open(ctx, &bad, targets.Env{}); err == nil || d != nil {
		t.Errorf("unknown family: %v, %v", d, err)
	}
	if _, err := targets.Open(ctx, &bench.Target{Name: "gone", Family: bench.FamilyACS, Console: bench.Console{Port: "/nonexistent/tty"}}, targets.Env{}); device.StepOf(err) != device.StepOpen {
		t.Errorf("missing port: %v, want a failure at %s", err, device.StepOpen)
	}
}

// A device holding the chain the ledger records for it is done: Already, no signature, nothing
// written, the record verified.
func TestDeviceHoldingItsRecordedChainIsAlready(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			l := newFakeLedger(t, s.bench)
			res, steps, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Already || res.Reused || l.Signatures() != 1 || !slices.Contains(steps, f.keyGen) {
				t.Fatalf("first run: %+v, %d signatures, steps %v", res, l.Signatures(), steps)
			}
			leaf := res.Issued.Certificate
			if st := l.State(leaf); st != device.StateVerified {
				t.Fatalf("record %s after the first run, want verified", st)
			}
			if !bytes.Equal(s.read(t, s.chainFile), res.Issued.ChainPEM) {
				t.Fatal("the device does not hold the chain issued")
			}

			again, steps, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !again.Already || again.Reused || !again.Issued.Certificate.Equal(leaf) || l.Signatures() != 1 || wrote(steps) || slices.Contains(steps, f.keyGen) {
				t.Fatalf("second run: %+v, %d signatures, steps %v", again, l.Signatures(), steps)
			}
			if len(l.Requests()) != 1 {
				t.Errorf("%d Issue calls, want 1", len(l.Requests()))
			}

			// A crash after the chain was stored and before its read back: the next run
			// finishes the record.
			if err := l.SetState(leaf, device.StateStored); err != nil {
				t.Fatal(err)
			}
			if res, _, err := s.provision(t, l, device.Options{}); err != nil || !res.Already || l.State(leaf) != device.StateVerified {
				t.Fatalf("third run: %+v, %v, record %s", res, err, l.State(leaf))
			}
		})
	}
}

// Killed between issue and storing the chain: the device keeps its key, the ledger its chain.
// The next run makes no key and no signature: it gets the recorded chain and stores it.
func TestInterruptedAfterIssueGetsTheRecordedChain(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			l := newFakeLedger(t, s.bench)
			ctx, kill := context.WithCancel(testCtx(t))
			d := s.open(t)
			_, err := d.Provision(ctx, l, device.Options{Progress: func(_, step string) {
				if step == "upload" {
					kill()
				}
			}})
			d.Close()
			if err == nil || l.Signatures() != 1 {
				t.Fatalf("killed run: %v, %d signatures", err, l.Signatures())
			}
			recorded := l.Requests()
			if _, err := os.Stat(s.chainFile); err == nil {
				t.Fatal("the killed run stored a chain")
			}
			key := s.read(t, s.keyFile)

			res, steps, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Reused || res.Already || l.Signatures() != 1 || slices.Contains(steps, f.keyGen) || !bytes.Equal(s.read(t, s.keyFile), key) {
				t.Fatalf("next run: %+v, %d signatures, steps %v, key changed %v", res, l.Signatures(), steps, !bytes.Equal(s.read(t, s.keyFile), key))
			}
			if len(recorded) != 1 || l.State(res.Issued.Certificate) != device.StateVerified {
				t.Errorf("record %s", l.State(res.Issued.Certificate))
			}
			if !bytes.Equal(s.read(t, s.chainFile), res.Issued.ChainPEM) {
				t.Error("the device does not hold the recorded chain")
			}
		})
	}
}

// Killed between making the key and reserving its signature: the key is one the ledger does not
// know, on a device without a chain. The next run keeps it (no second key) and signs once.
func TestInterruptedBeforeReservationKeepsTheKey(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			l := newFakeLedger(t, s.bench)
			ctx, kill := context.WithCancel(testCtx(t))
			d := s.open(t)
			var steps []string
			_, err := d.Provision(ctx, l, device.Options{Progress: func(_, step string) {
				steps = append(steps, step)
				if step == device.StepIssue {
					kill()
				}
			}})
			d.Close()
			if err == nil || l.Signatures() != 0 || !slices.Contains(steps, f.keyGen) {
				t.Fatalf("killed run: %v, %d signatures, steps %v", err, l.Signatures(), steps)
			}
			key := s.read(t, s.keyFile)
			res, steps, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reused || l.Signatures() != 1 || slices.Contains(steps, f.keyGen) || !bytes.Equal(s.read(t, s.keyFile), key) {
				t.Fatalf("next run: %+v, %d signatures, steps %v", res, l.Signatures(), steps)
			}
			if !pki.SamePublicKey(res.Issued.Certificate.PublicKey, res.Issued.CSR.PublicKey) || l.State(res.Issued.Certificate) != device.StateVerified {
				t.Errorf("record %s", l.State(res.Issued.Certificate))
			}
		})
	}
}

// A chain the ledger does not know is refused and nothing is signed; --reprovision replaces it
// (a new key; the request names the leaf it replaces).
func TestUnknownChainIsRefusedUnlessReprovision(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			old := newFakeLedger(t, s.bench)
			first, _, err := s.provision(t, old, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			leaf := first.Issued.Certificate

			l := newFakeLedger(t, s.bench) // another station's ledger: it knows nothing
			_, steps, err := s.provision(t, l, device.Options{})
			if !errors.Is(err, device.ErrAlreadyProvisioned) || device.StepOf(err) != device.StepCheck {
				t.Fatalf("err = %v, want ErrAlreadyProvisioned at %s", err, device.StepCheck)
			}
			for _, want := range []string{pki.Fingerprint(leaf), leaf.SerialNumber.Text(16), "--reprovision", "does not know"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if l.Signatures() != 0 || len(l.Requests()) != 0 || wrote(steps) || slices.Contains(steps, f.keyGen) {
				t.Fatalf("refused run: %d signatures, %d requests, steps %v", l.Signatures(), len(l.Requests()), steps)
			}

			res, steps, err := s.provision(t, l, device.Options{Reprovision: true})
			if err != nil {
				t.Fatal(err)
			}
			reqs := l.Requests()
			if l.Signatures() != 1 || len(reqs) != 1 || reqs[0].Replaces == nil || !reqs[0].Replaces.Equal(leaf) || !slices.Contains(steps, f.keyGen) {
				t.Fatalf("reprovision: %d signatures, requests %+v, steps %v", l.Signatures(), reqs, steps)
			}
			if pki.SamePublicKey(res.Issued.Certificate.PublicKey, leaf.PublicKey) || !bytes.Equal(s.read(t, s.chainFile), res.Issued.ChainPEM) {
				t.Error("reprovisioning kept the old key or did not store the new chain")
			}
		})
	}
}

// Reprovisioning a device whose chain the ledger records replaces that record.
func TestReprovisionReplacesTheRecordedIdentity(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			l := newFakeLedger(t, s.bench)
			first, _, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			res, _, err := s.provision(t, l, device.Options{Reprovision: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Already || l.Signatures() != 2 || l.State(first.Issued.Certificate) != device.StateReplaced || l.State(res.Issued.Certificate) != device.StateVerified {
				t.Fatalf("%+v: %d signatures, old record %s, new %s", res, l.Signatures(), l.State(first.Issued.Certificate), l.State(res.Issued.Certificate))
			}
		})
	}
}

// A device that lost its chain keeps its key and gets its recorded chain again; with
// --reprovision its verified identity is replaced by a new key's.
func TestLostChainGetsTheRecordedChainAgain(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			l := newFakeLedger(t, s.bench)
			first, _, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(s.chainFile); err != nil {
				t.Fatal(err)
			}
			res, steps, err := s.provision(t, l, device.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Reused || !res.Issued.Certificate.Equal(first.Issued.Certificate) || l.Signatures() != 1 || slices.Contains(steps, f.keyGen) || !wrote(steps) {
				t.Fatalf("%+v, %d signatures, steps %v", res, l.Signatures(), steps)
			}

			if err := os.Remove(s.chainFile); err != nil {
				t.Fatal(err)
			}
			res, steps, err = s.provision(t, l, device.Options{Reprovision: true})
			if err != nil {
				t.Fatal(err)
			}
			reqs := l.Requests()
			last := reqs[len(reqs)-1]
			if res.Reused || l.Signatures() != 2 || !slices.Contains(steps, f.keyGen) || last.Replaces == nil || !last.Replaces.Equal(first.Issued.Certificate) {
				t.Fatalf("reprovision: %+v, %d signatures, steps %v, replaces %v", res, l.Signatures(), steps, last.Replaces)
			}
		})
	}
}

// The ledger failing to record a step fails the device at that step's record, naming the ledger.
func TestLedgerErrorFailsTheDeviceAtRecord(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			s := f.start(t)
			l := newFakeLedger(t, s.bench)
			l.failStored = errors.New("database is locked")
			res, _, err := s.provision(t, l, device.Options{})
			if device.StepOf(err) != device.StepRecord || !strings.Contains(err.Error(), "ledger") || !strings.Contains(err.Error(), "database is locked") {
				t.Fatalf("err = %v, want a failure at %s naming the ledger", err, device.StepRecord)
			}
			if res == nil || res.Issued == nil || l.State(res.Issued.Certificate) != device.StateIssued {
				t.Fatalf("result %+v", res)
			}
			l.failStored = nil
			if res, _, err := s.provision(t, l, device.Options{}); err != nil || !res.Already || l.Signatures() != 1 {
				t.Fatalf("next run: %+v, %v, %d signatures", res, err, l.Signatures())
			}
		})
	}
}

// The vendor tool signs in external mode: nothing goes through the Issuer or the ledger, and the
// result is the chain read back and verified to the roots.
func TestExternalModeLeavesTheLedgerAlone(t *testing.T) {
	sb := ackBench(t, 0, 1)
	s := &simDevice{sb.Bench, &sb.Bench.Targets[0], sb.Modules[0].KeyPath(), sb.Modules[0].CertPath()}
	l := newFakeLedger(t, s.bench)
	res, steps, err := s.provision(t, l, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Issued == nil || res.Issued.CSR != nil || res.Facts["provisioned_by"] != "vendor tool" || !bytes.Equal(s.read(t, s.chainFile), res.Issued.ChainPEM) {
		t.Fatalf("result %+v", res)
	}
	if l.Signatures() != 0 || len(l.Requests()) != 0 || l.State(res.Issued.Certificate) != "" {
		t.Errorf("the ledger was used: %d signatures, %d requests", l.Signatures(), len(l.Requests()))
	}
	if !slices.Contains(steps, ack.StepExternal) || !slices.Contains(steps, device.StepVerify) {
		t.Errorf("steps %v", steps)
	}
	_, _, err = s.provision(t, l, device.Options{})
	if !errors.Is(err, device.ErrAlreadyProvisioned) || device.StepOf(err) != device.StepCheck {
		t.Errorf("second run: %v", err)
	}
}

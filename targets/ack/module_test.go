package ack_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/signer/softdak"
	"hilbench/targets/ack"
)

// fast timing for the fake: it answers at once.
func testConfig() ack.Config {
	return ack.Config{Name: "dut1", Module: "ACK-SIM-MW1", ExchangeTimeout: 60 * time.Millisecond, SlowTimeout: 40 * time.Millisecond, BootTimeout: 3 * time.Second}
}

// testProfile is the ACK product profile, the CSR subject's source.
var testProfile = sync.OnceValues(func() (*pki.Profile, error) {
	return pki.LoadProfile(filepath.Join("..", "..", "fixtures", "profiles", "ack-product.conf"), pki.ProfileOptions{PerDeviceFields: []string{"CN"}})
})

func newModule(t *testing.T, cfg ack.Config, tr *console.Transcript) (*fakeModule, *ack.Module) {
	if cfg.Profile == nil {
		prof, err := testProfile()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Profile = prof
	}
	f, host := newFake(t)
	m := ack.New(host, cfg, tr)
	t.Cleanup(func() { m.Close() })
	return f, m
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// station is a development DAK, the ACK product profile and an issuer that counts its calls. It
// keeps no ledger: Lookup knows nothing, Stored and Verified are counted (targets/ has the tests
// of the ledger's rules).
type station struct {
	issuer   *pki.Issuer
	roots    []*x509.Certificate
	profile  *pki.Profile
	calls    atomic.Int32
	stored   atomic.Int32
	verified atomic.Int32
}

func newStation(t testing.TB) *station {
	t.Helper()
	r, err := softdak.InitDevelopment(t.TempDir(), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dak, err := softdak.Open(r.Key, r.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := pki.LoadProfile(filepath.Join("..", "..", "fixtures", "profiles", "ack-product.conf"), pki.ProfileOptions{PerDeviceFields: []string{"CN"}})
	if err != nil {
		t.Fatal(err)
	}
	return &station{issuer: &pki.Issuer{Profile: prof, Signer: dak, CA: dak.Certificate()}, roots: []*x509.Certificate{r.Root}, profile: prof}
}

func (s *station) Issue(_ context.Context, req device.IssueRequest) (*pki.Issued, error) {
	s.calls.Add(1)
	return s.issuer.Issue(req.CSRPEM)
}
func (s *station) Lookup(context.Context, crypto.PublicKey) (*device.Known, error) { return nil, nil }
func (s *station) Stored(context.Context, *x509.Certificate) error {
	s.stored.Add(1)
	return nil
}
func (s *station) Verified(context.Context, *x509.Certificate) error {
	s.verified.Add(1)
	return nil
}
func (s *station) Roots() []*x509.Certificate { return s.roots }

func TestHello(t *testing.T) {
	var buf bytes.Buffer
	tr := console.NewTranscript(&buf, nil)
	_, m := newModule(t, testConfig(), tr)
	info, err := m.Hello(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := ack.Info{Dialect: "HA1", Module: "ACK-SIM-MW1", DSN: "G0X1234", FW: "1.0", State: "blank", MaxChunk: 200}
	if info != want {
		t.Errorf("info %+v, want %+v", info, want)
	}
	tr.Close()
	if !strings.Contains(buf.String(), `dut1 > "!HA1|01|HELLO|`) || !strings.Contains(buf.String(), `dut1 < "!HA1|01|OK|`) {
		t.Errorf("transcript lacks the exchange:\n%s", buf.String())
	}
	s := m.LineStats()
	if s.FramesSent != 1 || s.Retransmissions != 0 || s.BytesSent == 0 || s.BytesReceived == 0 {
		t.Errorf("stats %+v", s)
	}
	ds := m.Stats()
	if ds["frames_sent"] != 1 || ds["tx_bytes"] != s.BytesSent || ds["rx_bytes"] != s.BytesReceived || len(ds) != 10 {
		t.Errorf("report stats %v", ds)
	}
}

func TestHelloWrongModel(t *testing.T) {
	cfg := testConfig()
	cfg.Module = "ACK-MW2"
	_, m := newModule(t, cfg, nil)
	_, err := m.Hello(ctx(t))
	if !errors.Is(err, ack.ErrWrongModule) || !strings.Contains(err.Error(), `"ACK-SIM-MW1"`) {
		t.Errorf("err = %v", err)
	}
}

func TestRetransmission(t *testing.T) {
	for _, tc := range []struct {
		act  action
		want func(ack.Stats) bool
	}{
		{actNAK, func(s ack.Stats) bool { return s.NAKs == 1 && s.Damaged == 0 && s.Timeouts == 0 }},
		{actDrop, func(s ack.Stats) bool { return s.Timeouts == 1 && s.NAKs == 0 }},
		{actDropAnswer, func(s ack.Stats) bool { return s.Timeouts == 1 }},
		{actGarble, func(s ack.Stats) bool { return s.Damaged == 1 && s.Timeouts == 0 }},
	} {
		f, m := newModule(t, testConfig(), nil)
		f.setAct(func(n int, verb string) action {
			if n == 1 {
				return tc.act
			}
			return actNormal
		})
		if _, err := m.Hello(ctx(t)); err != nil {
			t.Fatalf("action %d: %v", tc.act, err)
		}
		s := m.LineStats()
		if s.FramesSent != 2 || s.Retransmissions != 1 || !tc.want(s) {
			t.Errorf("action %d: stats %+v", tc.act, s)
		}
		if twice := f.executedTwice(); len(twice) > 0 {
			t.Errorf("action %d: executed twice: %v", tc.act, twice)
		}
	}
}

func TestGiveUpAfterEightSends(t *testing.T) {
	f, m := newModule(t, testConfig(), nil)
	f.silent = true
	_, err := m.Hello(ctx(t))
	if !errors.Is(err, ack.ErrNoAnswer) || !strings.Contains(err.Error(), "HELLO") || !strings.Contains(err.Error(), "8 sends") {
		t.Fatalf("err = %v", err)
	}
	if s := m.LineStats(); s.FramesSent != 8 || s.Retransmissions != 7 || s.Timeouts != 8 {
		t.Errorf("stats %+v", s)
	}
}

func TestWrongDialect(t *testing.T) {
	f, m := newModule(t, testConfig(), nil)
	f.setAct(func(int, string) action { return actBadDialect })
	_, err := m.Hello(ctx(t))
	if !errors.Is(err, ack.ErrWrongDialect) || !strings.Contains(err.Error(), "module speaks HA2; hilbench speaks HA1") {
		t.Fatalf("err = %v", err)
	}
	if s := m.LineStats(); s.FramesSent != 1 {
		t.Errorf("a dialect mismatch was retried: %+v", s)
	}
}

// An answer naming another dialect in a shape whose CRC cannot be checked may be noise: it is
// resent, and only the same dialect three answers in a row is a mismatch.
func TestForeignShapeNeedsRepeats(t *testing.T) {
	f, m := newModule(t, testConfig(), nil)
	f.setAct(func(n int, verb string) action {
		if n == 1 {
			return actForeignShape
		}
		return actNormal
	})
	if _, err := m.Hello(ctx(t)); err != nil {
		t.Fatalf("one foreign-looking answer: %v", err)
	}
	if s := m.LineStats(); s.Damaged != 1 || s.Retransmissions != 1 {
		t.Errorf("stats %+v; want 1 damaged answer, 1 retransmission", s)
	}

	f, m = newModule(t, testConfig(), nil)
	f.setAct(func(int, string) action { return actForeignShape })
	_, err := m.Hello(ctx(t))
	if !errors.Is(err, ack.ErrWrongDialect) || !strings.Contains(err.Error(), "module speaks HA2") || !strings.Contains(err.Error(), "3 answers in a row") {
		t.Fatalf("err = %v", err)
	}
	if s := m.LineStats(); s.FramesSent != 3 {
		t.Errorf("sent %d frames; want 3", s.FramesSent)
	}
}

func TestTextOnlyModule(t *testing.T) {
	f, m := newModule(t, testConfig(), nil)
	f.textOnly = true
	_, err := m.Hello(ctx(t))
	if !errors.Is(err, ack.ErrNotSpeaking) || !strings.Contains(err.Error(), "does not speak the HA1 dialect") || !strings.Contains(err.Error(), "unknown command, type help") {
		t.Fatalf("err = %v", err)
	}
}

func TestProvision(t *testing.T) {
	st := newStation(t)
	var buf bytes.Buffer
	tr := console.NewTranscript(&buf, nil)
	f, m := newModule(t, testConfig(), tr)
	var steps []string
	opts := device.Options{Progress: func(_, step string) { steps = append(steps, step) }}
	res, err := m.Provision(ctx(t), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	issued := res.Issued
	if st.calls.Load() != 1 || !bytes.Equal(f.cert, issued.ChainPEM) || issued.Certificate.Subject.CommonName != "G0X1234" || res.Already || res.Reused {
		t.Fatalf("calls %d, stored %d bytes, cn %q, result %+v", st.calls.Load(), len(f.cert), issued.Certificate.Subject.CommonName, res)
	}
	if st.stored.Load() != 1 || st.verified.Load() != 1 {
		t.Errorf("ledger told stored %d, verified %d times; want once each", st.stored.Load(), st.verified.Load())
	}
	wantSteps := []string{ack.StepHello, ack.StepKeyGen, ack.StepCSR, device.StepIssue, ack.StepUpload, ack.StepCommit, device.StepReadBack, device.StepVerify}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("steps %v, want %v", steps, wantSteps)
	}
	if len(issued.ChainPEM) <= 2*200 {
		t.Errorf("chain of %d bytes does not exercise several chunks", len(issued.ChainPEM))
	}
	if s := m.LineStats(); s.Retransmissions != 0 || s.Recoveries != 0 {
		t.Errorf("stats %+v", s)
	}

	if err := m.Verify(ctx(t), issued, st.roots, time.Now()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := m.Reboot(ctx(t)); err != nil || m.Info().State != ack.StateProvisioned {
		t.Fatalf("reboot: %+v %v", m.Info(), err)
	}
	if err := m.FactoryReset(ctx(t)); err != nil || m.Info().State != ack.StateProvisioned {
		t.Fatalf("factory reset: %+v %v", m.Info(), err)
	}
	if err := m.Verify(ctx(t), issued, st.roots, time.Now()); err != nil {
		t.Fatalf("verify after reset: %v", err)
	}
	chain, err := m.ReadChain(ctx(t))
	if err != nil || !device.SameChain(chain, issued.Chain) {
		t.Fatalf("read chain: %v", err)
	}
	raw, err := m.ReadChainPEM(ctx(t))
	if err != nil || !bytes.Equal(raw, issued.ChainPEM) {
		t.Fatalf("read chain PEM: %v", err)
	}

	// A second run on a provisioned module whose chain the ledger does not know stops at the
	// check, and signs nothing.
	_, m2 := newModuleOn(t, f)
	_, err = m2.Provision(ctx(t), st, device.Options{})
	if !errors.Is(err, device.ErrAlreadyProvisioned) || device.StepOf(err) != device.StepCheck || !strings.Contains(err.Error(), pki.Fingerprint(issued.Certificate)) || st.calls.Load() != 1 {
		t.Fatalf("second provision: %v (calls %d)", err, st.calls.Load())
	}
	// Unless asked to: a new key, a new chain.
	again, err := m2.Provision(ctx(t), st, device.Options{Reprovision: true})
	if err != nil || st.calls.Load() != 2 || again.Issued.Certificate.Equal(issued.Certificate) {
		t.Fatalf("reprovision: %v (calls %d)", err, st.calls.Load())
	}
	tr.Close()
	if !strings.Contains(buf.String(), "|KEYGEN|") || !strings.Contains(buf.String(), "|COMMIT|") {
		t.Error("transcript lacks KEYGEN or COMMIT")
	}
}

// newModuleOn attaches a second driver to a fake's state through a new pipe.
func newModuleOn(t *testing.T, old *fakeModule) (*fakeModule, *ack.Module) {
	f, m := newModule(t, testConfig(), nil)
	old.mu.Lock()
	f.key, f.cert, f.curve = old.key, old.cert, old.curve
	old.mu.Unlock()
	return f, m
}

func TestProvisionExactlyOnceUnderLoss(t *testing.T) {
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	// Every third request loses its answer, every fifth arrives damaged, every seventh answer is damaged.
	f.setAct(func(n int, verb string) action {
		switch {
		case n%3 == 0:
			return actDropAnswer
		case n%5 == 0:
			return actNAK
		case n%7 == 0:
			return actGarble
		}
		return actNormal
	})
	if _, err := m.Provision(ctx(t), st, device.Options{}); err != nil {
		t.Fatal(err)
	}
	if twice := f.executedTwice(); len(twice) > 0 {
		t.Errorf("requests executed twice: %v", twice)
	}
	s := m.LineStats()
	if s.Retransmissions == 0 || s.Timeouts == 0 || s.NAKs == 0 || s.Damaged == 0 || s.Retransmissions != s.Timeouts+s.NAKs+s.Damaged {
		t.Errorf("stats %+v", s)
	}
	if f.verbCount("KEYGEN") != 1 || f.verbCount("COMMIT") != 1 || st.calls.Load() != 1 {
		t.Errorf("KEYGEN %d, COMMIT %d, issued %d times", f.verbCount("KEYGEN"), f.verbCount("COMMIT"), st.calls.Load())
	}
}

func TestProvisionRecoversFromBoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   string // verb whose nth occurrence triggers
		nth  int
		act  action
	}{
		{"boot before second DATA", "DATA", 2, actRebootFirst},
		{"boot after second DATA", "DATA", 2, actRebootAfter},
		{"boot after COMMIT", "COMMIT", 1, actRebootAfter},
		{"boot before COMMIT", "COMMIT", 1, actRebootFirst},
		{"boot after KEYGEN", "KEYGEN", 1, actRebootAfter},
		{"boot before CSR", "CSR", 1, actRebootFirst},
		{"boot between DATA 3 and 4", "DATA", 3, actAnswerThenBoot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStation(t)
			f, m := newModule(t, testConfig(), nil)
			seen := 0
			f.setAct(func(n int, verb string) action {
				if verb == tc.at {
					if seen++; seen == tc.nth {
						return tc.act
					}
				}
				return actNormal
			})
			var recovers int
			opts := device.Options{Progress: func(_, step string) {
				if step == ack.StepRecover {
					recovers++
				}
			}}
			res, err := m.Provision(ctx(t), st, opts)
			if err != nil {
				t.Fatal(err)
			}
			issued := res.Issued
			if !bytes.Equal(f.cert, issued.ChainPEM) || st.calls.Load() != 1 {
				t.Errorf("stored %d bytes, issued %d times", len(f.cert), st.calls.Load())
			}
			if s := m.LineStats(); s.Recoveries != 1 || recovers != 1 {
				t.Errorf("recoveries %d, progress %d", s.Recoveries, recovers)
			}
			if f.verbCount("KEYGEN") != 1 {
				t.Errorf("KEYGEN ran %d times", f.verbCount("KEYGEN"))
			}
		})
	}
}

func TestProvisionGivesUpAfterThreeRecoveries(t *testing.T) {
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	f.setAct(func(n int, verb string) action {
		if verb == "COMMIT" {
			return actRebootFirst
		}
		return actNormal
	})
	_, err := m.Provision(ctx(t), st, device.Options{})
	var se *device.StepError
	if !errors.As(err, &se) || se.Step != ack.StepRecover || !errors.Is(err, ack.ErrModuleRestarted) || !strings.Contains(err.Error(), "3 recoveries") {
		t.Fatalf("err = %v", err)
	}
	if m.LineStats().Recoveries != 3 || st.calls.Load() != 1 {
		t.Errorf("recoveries %d, issued %d times", m.LineStats().Recoveries, st.calls.Load())
	}
}

func TestProvisionPowerCyclesASilentModule(t *testing.T) {
	silentAtDATA2 := func(f *fakeModule) {
		datas := 0 // act runs under the fake's lock: count here, not with verbCount
		f.setAct(func(n int, verb string) action {
			if verb == "DATA" {
				if datas++; datas == 2 {
					return actSilence
				}
			}
			return actNormal
		})
	}

	// Without a power switch a silence is an error naming the verb.
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	silentAtDATA2(f)
	_, err := m.Provision(ctx(t), st, device.Options{})
	if !errors.Is(err, ack.ErrNoAnswer) || !strings.Contains(err.Error(), "DATA") {
		t.Fatalf("err = %v", err)
	}
	if err := m.PowerCycle(ctx(t)); !errors.Is(err, device.ErrUnsupported) {
		t.Errorf("PowerCycle without a switch = %v, want ErrUnsupported", err)
	}

	// With one, the module is cycled once and provisioning goes on.
	st = newStation(t)
	var cycles int
	var f2 *fakeModule
	cfg := testConfig()
	cfg.PowerCycle = func(context.Context) error { cycles++; f2.powerCycle(); return nil }
	f2, m = newModule(t, cfg, nil)
	silentAtDATA2(f2)
	res, err := m.Provision(ctx(t), st, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cycles != 1 || m.LineStats().Recoveries != 1 || st.calls.Load() != 1 || !bytes.Equal(f2.cert, res.Issued.ChainPEM) {
		t.Errorf("cycles %d, recoveries %d, issued %d times", cycles, m.LineStats().Recoveries, st.calls.Load())
	}
	if err := m.PowerCycle(ctx(t)); err != nil || cycles != 2 {
		t.Errorf("PowerCycle: %v (cycles %d)", err, cycles)
	}
}

func TestProvisionBadCSRUploadsNothing(t *testing.T) {
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	f.curve = elliptic.P384()
	_, err := m.Provision(ctx(t), st, device.Options{})
	var se *device.StepError
	if !errors.As(err, &se) || se.Step != device.StepIssue || !errors.Is(err, pki.ErrCSRCurve) {
		t.Fatalf("err = %v", err)
	}
	for _, v := range []string{"BEGIN", "DATA", "COMMIT"} {
		if n := f.verbCount(v); n != 0 {
			t.Errorf("%s sent %d times after a refused CSR", v, n)
		}
	}
	if m.Issued() != nil {
		t.Error("a chain is remembered for a refused CSR")
	}
}

func TestProvisionIssuesOncePerModule(t *testing.T) {
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	// COMMIT refused: the chain was issued, the run fails.
	f.setAct(func(n int, verb string) action {
		if verb == "COMMIT" {
			return actBadDialect
		}
		return actNormal
	})
	if _, err := m.Provision(ctx(t), st, device.Options{}); !errors.Is(err, ack.ErrWrongDialect) {
		t.Fatalf("err = %v", err)
	}
	// A retry on the same Module reuses the chain.
	f.setAct(nil)
	if _, err := m.Provision(ctx(t), st, device.Options{}); err != nil || st.calls.Load() != 1 {
		t.Fatalf("retry: %v, issued %d times", err, st.calls.Load())
	}
	// The module makes a new key behind the driver's back: no second signature.
	f.mu.Lock()
	f.key, f.cert = nil, nil
	f.mu.Unlock()
	_, err := m.Provision(ctx(t), st, device.Options{})
	if err == nil || !strings.Contains(err.Error(), "refusing a second signature") || st.calls.Load() != 1 {
		t.Fatalf("new key: %v, issued %d times", err, st.calls.Load())
	}
}

func TestVerifyRefusesUnprovisioned(t *testing.T) {
	st := newStation(t)
	_, m := newModule(t, testConfig(), nil)
	err := m.Verify(ctx(t), nil, st.roots, time.Now())
	if !errors.Is(err, device.ErrNoChain) || !strings.Contains(err.Error(), "is blank") {
		t.Fatalf("err = %v", err)
	}
}

func TestRebootWithoutBootFails(t *testing.T) {
	cfg := testConfig()
	cfg.BootTimeout = 300 * time.Millisecond
	f, m := newModule(t, cfg, nil)
	f.noRestart = true // answers OK and stays up
	err := m.Reboot(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "did not restart") {
		t.Fatalf("err = %v", err)
	}
}

func TestCorruptReadBackFails(t *testing.T) {
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	f.corruptCert = true
	_, err := m.Provision(ctx(t), st, device.Options{})
	var se *device.StepError
	if !errors.As(err, &se) || se.Step != device.StepReadBack || !errors.Is(err, device.ErrChainMismatch) || !strings.Contains(err.Error(), "the module reports") {
		t.Fatalf("provision: %v", err)
	}
	if st.stored.Load() != 1 || st.verified.Load() != 0 {
		t.Errorf("ledger told stored %d, verified %d times; want stored only", st.stored.Load(), st.verified.Load())
	}
	if _, err := m.ReadChain(ctx(t)); err == nil || !strings.Contains(err.Error(), "the module reports") {
		t.Fatalf("read chain: %v", err)
	}
}

func TestClosedPortFailsFast(t *testing.T) {
	f, host := newFake(t)
	m := ack.New(host, testConfig(), nil)
	defer m.Close()
	f.silent = true
	host.Close()
	start := time.Now()
	_, err := m.Hello(ctx(t))
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

func TestTextOnlyErrorIsRedacted(t *testing.T) {
	cfg := testConfig()
	cfg.Redactor = console.NewRedactor("type help")
	f, m := newModule(t, cfg, nil)
	f.textOnly = true
	_, err := m.Hello(ctx(t))
	if err == nil || strings.Contains(err.Error(), "type help") || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Fatalf("err = %v", err)
	}
}

// A restart while the held chain is read is recovered from, and the chain read again: it is not
// taken for a chain that cannot be read.
func TestRestartWhileCheckingTheHeldChain(t *testing.T) {
	st := newStation(t)
	f, m := newModule(t, testConfig(), nil)
	if _, err := m.Provision(ctx(t), st, device.Options{}); err != nil {
		t.Fatal(err)
	}
	f2, m2 := newModuleOn(t, f)
	reads := 0
	f2.setAct(func(n int, verb string) action {
		if verb == "READ" {
			if reads++; reads == 1 {
				return actRebootFirst
			}
		}
		return actNormal
	})
	_, err := m2.Provision(ctx(t), st, device.Options{})
	if !errors.Is(err, device.ErrAlreadyProvisioned) || strings.Contains(err.Error(), "cannot be read") || m2.LineStats().Recoveries != 1 {
		t.Fatalf("err = %v, recoveries %d; want a refusal after one recovery", err, m2.LineStats().Recoveries)
	}
	if st.calls.Load() != 1 {
		t.Errorf("%d signatures, want 1", st.calls.Load())
	}
}

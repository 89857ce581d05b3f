package device_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/pki"
)

// cert is a self-signed certificate for a new key (or for key, when given).
func cert(t *testing.T, cn string, key *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func issued(c *x509.Certificate) *pki.Issued {
	chain := []*x509.Certificate{c}
	return &pki.Issued{Certificate: c, Chain: chain, ChainPEM: pki.EncodeChainPEM(chain)}
}

// lookupOnly answers Lookup from a fixed Known; Issue returns a fixed chain.
type lookupOnly struct {
	known  *device.Known
	err    error
	answer *pki.Issued
	calls  int
}

func (l *lookupOnly) Issue(context.Context, device.IssueRequest) (*pki.Issued, error) {
	l.calls++
	return l.answer, l.err
}
func (l *lookupOnly) Lookup(context.Context, crypto.PublicKey) (*device.Known, error) {
	return l.known, l.err
}
func (l *lookupOnly) Stored(context.Context, *x509.Certificate) error   { return l.err }
func (l *lookupOnly) Verified(context.Context, *x509.Certificate) error { return l.err }
func (l *lookupOnly) Roots() []*x509.Certificate                        { return nil }

func TestCheckHeld(t *testing.T) {
	ctx := context.Background()
	held, key := cert(t, "held", nil)
	other, _ := cert(t, "other", key) // another certificate for the same key
	for _, tc := range []struct {
		name  string
		known *device.Known
		opts  device.Options
		done  bool
		why   string // "" with done or Reprovision
	}{
		{"recorded", &device.Known{State: device.StateVerified, Issued: issued(held)}, device.Options{}, true, ""},
		{"recorded, stored", &device.Known{State: device.StateStored, Issued: issued(held)}, device.Options{}, true, ""},
		{"unknown", nil, device.Options{}, false, "the ledger does not know it"},
		{"another chain", &device.Known{State: device.StateVerified, Issued: issued(other)}, device.Options{}, false, "records another chain for its key, leaf SHA-256 " + pki.Fingerprint(other)},
		{"reserved only", &device.Known{State: device.StateReserved}, device.Options{}, false, "only a reservation"},
		{"replaced", &device.Known{State: device.StateReplaced, Issued: issued(held)}, device.Options{}, false, "as replaced"},
		{"reprovision", &device.Known{State: device.StateVerified, Issued: issued(held)}, device.Options{Reprovision: true}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := device.CheckHeld(ctx, &lookupOnly{known: tc.known}, "dut1", []*x509.Certificate{held}, tc.opts)
			switch {
			case tc.done:
				if err != nil || k != tc.known {
					t.Fatalf("got %+v, %v; want the record", k, err)
				}
			case tc.why == "":
				if err != nil || k != nil {
					t.Fatalf("got %+v, %v; want nil, nil (replace)", k, err)
				}
			default:
				if k != nil || !errors.Is(err, device.ErrAlreadyProvisioned) || device.StepOf(err) != device.StepCheck {
					t.Fatalf("got %+v, %v; want a refusal at %s", k, err, device.StepCheck)
				}
				for _, want := range []string{tc.why, pki.Fingerprint(held), held.SerialNumber.Text(16), "pass --reprovision to replace it", "dut1: check-provisioned"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%q lacks %q", err, want)
					}
				}
			}
		})
	}
	_, err := device.CheckHeld(ctx, &lookupOnly{err: errors.New("connection refused")}, "dut1", []*x509.Certificate{held}, device.Options{})
	if device.StepOf(err) != device.StepCheck || !strings.Contains(err.Error(), "ledger lookup") {
		t.Errorf("lookup failure: %v", err)
	}
}

func TestNeedFreshKey(t *testing.T) {
	re := device.Options{Reprovision: true}
	for _, tc := range []struct {
		k    *device.Known
		opts device.Options
		want bool
	}{
		{nil, device.Options{}, false},
		{nil, re, false},
		{&device.Known{State: device.StateReserved}, re, false},
		{&device.Known{State: device.StateIssued}, re, false},
		{&device.Known{State: device.StateStored}, re, false},
		{&device.Known{State: device.StateVerified}, device.Options{}, false},
		{&device.Known{State: device.StateVerified}, re, true},
		{&device.Known{State: device.StateReplaced}, device.Options{}, true},
	} {
		if got := device.NeedFreshKey(tc.k, tc.opts); got != tc.want {
			t.Errorf("NeedFreshKey(%+v, reprovision %v) = %v, want %v", tc.k, tc.opts.Reprovision, got, tc.want)
		}
	}
}

func TestIssueChain(t *testing.T) {
	ctx := context.Background()
	leaf, key := cert(t, "leaf", nil)
	req := device.IssueRequest{Target: "dut1"}
	l := &lookupOnly{answer: issued(leaf)}
	is, reused, err := device.IssueChain(ctx, l, req, key.Public(), nil)
	if err != nil || reused || is != l.answer {
		t.Fatalf("new chain: %v, reused %v", err, reused)
	}
	before := &device.Known{State: device.StateIssued, Issued: issued(leaf)}
	if _, reused, err = device.IssueChain(ctx, l, req, key.Public(), before); err != nil || !reused {
		t.Fatalf("recorded chain: %v, reused %v", err, reused)
	}
	_, otherKey := cert(t, "x", nil)
	if _, _, err = device.IssueChain(ctx, l, req, otherKey.Public(), nil); device.StepOf(err) != device.StepIssue || !strings.Contains(err.Error(), "does not hold the key") {
		t.Errorf("chain for another key: %v", err)
	}
	l = &lookupOnly{err: errors.New("budget exhausted")}
	if _, _, err = device.IssueChain(ctx, l, req, key.Public(), nil); device.StepOf(err) != device.StepIssue || !strings.Contains(err.Error(), "budget exhausted") {
		t.Errorf("refused: %v", err)
	}
	if err := device.MarkStored(ctx, l, "dut1", leaf); device.StepOf(err) != device.StepRecord || !strings.Contains(err.Error(), "ledger") {
		t.Errorf("MarkStored: %v", err)
	}
	if err := device.MarkVerified(ctx, l, "dut1", leaf); device.StepOf(err) != device.StepRecord || !strings.Contains(err.Error(), "budget exhausted") {
		t.Errorf("MarkVerified: %v", err)
	}
}

func TestVerifyStep(t *testing.T) {
	root, _ := cert(t, "root", nil)
	chain := []*x509.Certificate{root}
	now := time.Now()
	if err := device.VerifyStep("dut1", chain, issued(root), []*x509.Certificate{root}, now); err != nil {
		t.Fatalf("the issued chain: %v", err)
	}
	other, _ := cert(t, "other", nil)
	if err := device.VerifyStep("dut1", chain, issued(other), []*x509.Certificate{root}, now); device.StepOf(err) != device.StepReadBack || !errors.Is(err, device.ErrChainMismatch) {
		t.Errorf("another chain: %v", err)
	}
	if err := device.VerifyStep("dut1", nil, nil, []*x509.Certificate{root}, now); device.StepOf(err) != device.StepReadBack || !errors.Is(err, device.ErrNoChain) {
		t.Errorf("no chain: %v", err)
	}
	if err := device.VerifyStep("dut1", []*x509.Certificate{other}, nil, []*x509.Certificate{root}, now); device.StepOf(err) != device.StepVerify {
		t.Errorf("a chain to other roots: %v", err)
	}
	if !device.SameChain(chain, []*x509.Certificate{root}) || device.SameChain(chain, []*x509.Certificate{other}) || device.SameChain(nil, nil) {
		t.Error("SameChain")
	}
	want := device.WithCSR(issued(root), &x509.CertificateRequest{PublicKey: other.PublicKey})
	if err := device.VerifyStep("dut1", chain, want, []*x509.Certificate{root}, now); device.StepOf(err) != device.StepVerify || !strings.Contains(err.Error(), "CSR") {
		t.Errorf("leaf key is not the CSR's: %v", err)
	}
}

package targets_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/signer/softdak"
	"hilbench/harness/station"
	"hilbench/targets/ack"
)

// fakeLedger is an in-memory device.Issuer with the ledger's rules, for the drivers' exactly-once
// tests: one live record per device key (and per device id); a key with a chain gets that chain
// again with no signature; a reserved key is signed for and its record completed; Replaces
// retires the replaced leaf's record in the same step; Stored and Verified only move a live
// record of that very certificate forward. It signs with a real pki.Issuer and counts signatures.
type fakeLedger struct {
	certs *pki.Issuer
	roots []*x509.Certificate

	mu         sync.Mutex
	recs       []*fakeRecord
	signatures int
	requests   []device.IssueRequest
	// failStored and failVerified, when set, are what Stored and Verified answer.
	failStored, failVerified error
}

type fakeRecord struct {
	key, deviceID, target string
	state                 string
	issued                *pki.Issued
}

var _ device.Issuer = (*fakeLedger)(nil)

// newFakeLedger signs with the bench's DAK and profile; its roots are the bench's.
func newFakeLedger(t testing.TB, b *bench.Bench) *fakeLedger {
	t.Helper()
	dak, err := softdak.Open(b.Signer.Key, b.Signer.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := station.LoadProfile(b)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := station.Roots(b)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeLedger{certs: &pki.Issuer{Profile: prof, Signer: dak, CA: dak.Certificate()}, roots: roots}
}

func keyOf(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

var stateRank = map[string]int{device.StateReserved: 1, device.StateIssued: 2, device.StateStored: 3, device.StateVerified: 4, device.StateReplaced: 5}

func (l *fakeLedger) live(key string) *fakeRecord {
	for _, r := range l.recs {
		if r.key == key && r.state != device.StateReplaced {
			return r
		}
	}
	return nil
}

func (l *fakeLedger) Issue(ctx context.Context, req device.IssueRequest) (*pki.Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // the station went down before the reservation
	}
	csr, err := l.certs.Profile.CheckCSR(req.CSRPEM)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = append(l.requests, req)
	key := keyOf(csr.PublicKey)
	rec := l.live(key)
	if rec != nil && rec.issued != nil {
		return device.WithCSR(rec.issued, csr), nil // the recorded chain, no signature
	}
	var replaced *fakeRecord
	if req.Replaces != nil {
		replaced = l.live(keyOf(req.Replaces.PublicKey))
		if replaced == rec {
			replaced = nil
		}
	}
	if req.DeviceID != "" {
		for _, r := range l.recs {
			if r.deviceID == req.DeviceID && r.state != device.StateReplaced && r != rec && r != replaced {
				return nil, fmt.Errorf("device %s already has a live ledger record (key %s)", req.DeviceID, r.key[:12])
			}
		}
	}
	issued, err := l.certs.Issue(req.CSRPEM)
	if err != nil {
		return nil, err
	}
	l.signatures++
	if replaced != nil {
		replaced.state = device.StateReplaced
	}
	if rec == nil {
		rec = &fakeRecord{key: key, deviceID: req.DeviceID, target: req.Target}
		l.recs = append(l.recs, rec)
	}
	rec.state, rec.issued = device.StateIssued, issued
	return issued, nil
}

func (l *fakeLedger) Lookup(_ context.Context, pub crypto.PublicKey) (*device.Known, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.live(keyOf(pub))
	if rec == nil {
		return nil, nil
	}
	k := &device.Known{State: rec.state}
	if rec.issued != nil {
		// As the ledger has it: the chain, not the CSR.
		is := *rec.issued
		is.CSR = nil
		k.Issued = &is
	}
	return k, nil
}

func (l *fakeLedger) advance(leaf *x509.Certificate, to string, fail error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fail != nil {
		return fail
	}
	rec := l.live(keyOf(leaf.PublicKey))
	if rec == nil || rec.issued == nil || !rec.issued.Certificate.Equal(leaf) {
		return fmt.Errorf("no live record of certificate %s", pki.Fingerprint(leaf))
	}
	if stateRank[to] > stateRank[rec.state] {
		rec.state = to
	}
	return nil
}

func (l *fakeLedger) Stored(_ context.Context, leaf *x509.Certificate) error {
	return l.advance(leaf, device.StateStored, l.failStored)
}

func (l *fakeLedger) Verified(_ context.Context, leaf *x509.Certificate) error {
	return l.advance(leaf, device.StateVerified, l.failVerified)
}

func (l *fakeLedger) Roots() []*x509.Certificate { return l.roots }

// Signatures is how many certificates the DAK signed.
func (l *fakeLedger) Signatures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.signatures
}

// Requests are the Issue calls so far.
func (l *fakeLedger) Requests() []device.IssueRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.requests)
}

// State is the state of leaf's record ("" when the ledger has none).
func (l *fakeLedger) State(leaf *x509.Certificate) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.issued != nil && r.issued.Certificate.Equal(leaf) {
			return r.state
		}
	}
	return ""
}

// SetState moves leaf's record to state (backwards too: a crash the test stages).
func (l *fakeLedger) SetState(leaf *x509.Certificate, state string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.issued != nil && r.issued.Certificate.Equal(leaf) {
			r.state = state
			return nil
		}
	}
	return errors.New("no such record")
}

// The fake keeps the ledger's rules it stands in for.
func TestFakeLedgerRules(t *testing.T) {
	l := newFakeLedger(t, ackBench(t, 1, 0).Bench)
	ctx := context.Background()
	csr1, csr2 := newCSR(t, l, "G0A1TEST1"), newCSR(t, l, "G0A1TEST1")
	first, err := l.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: csr1})
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: csr1})
	if err != nil || !again.Certificate.Equal(first.Certificate) || l.Signatures() != 1 {
		t.Fatalf("second Issue for one key: %v, %d signatures", err, l.Signatures())
	}
	if err := l.Verified(ctx, first.Certificate); err != nil || l.State(first.Certificate) != device.StateVerified {
		t.Fatalf("Verified: %v, state %q", err, l.State(first.Certificate))
	}
	if err := l.Stored(ctx, first.Certificate); err != nil || l.State(first.Certificate) != device.StateVerified {
		t.Fatalf("Stored after Verified went backwards: %v, state %q", err, l.State(first.Certificate))
	}
	second, err := l.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: csr2, Replaces: first.Certificate})
	if err != nil || l.Signatures() != 2 || l.State(first.Certificate) != device.StateReplaced {
		t.Fatalf("replacing Issue: %v, %d signatures, old state %q", err, l.Signatures(), l.State(first.Certificate))
	}
	if k, _ := l.Lookup(ctx, first.Certificate.PublicKey); k != nil {
		t.Errorf("Lookup of a replaced key = %+v, want nil", k)
	}
	if k, _ := l.Lookup(ctx, second.Certificate.PublicKey); k == nil || k.State != device.StateIssued || k.Issued.CSR != nil {
		t.Errorf("Lookup = %+v", k)
	}
	if err := l.Stored(ctx, first.Certificate); err == nil {
		t.Error("Stored of a replaced certificate succeeded")
	}
}

// newCSR is a CSR for a new P-256 key with the ACK profile's subject for dsn.
func newCSR(t *testing.T, l *fakeLedger, dsn string) []byte {
	t.Helper()
	subject, err := ack.SubjectDER(l.certs.Profile, dsn)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: subject, SignatureAlgorithm: x509.ECDSAWithSHA256}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

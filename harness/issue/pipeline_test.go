package issue

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/ledger/pgtest"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/softdak"
)

var testDAK struct {
	sync.Once
	init *softdak.InitResult
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "issuedak")
	if err != nil {
		panic(err)
	}
	testDAK.init, testDAK.err = softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{})
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// countingSigner counts the DAK's signatures: the one figure exactly-once is about.
type countingSigner struct {
	signer.Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// InProcess passes on the wrapped signer's answer: the pipeline treats a counted SoftDAK as
// the station treats SoftDAK (no check after signing, concurrent signatures).
func (c *countingSigner) InProcess() bool { return pki.SignsInProcess(c.Signer) }

type fixture struct {
	p       *Pipeline
	signer  *countingSigner
	ledger  ledger.Store
	audit   *audit.Log
	dir     string
	profile *pki.Profile
}

func newFixture(t *testing.T, max int64) *fixture {
	t.Helper()
	if testDAK.err != nil {
		t.Fatal(testDAK.err)
	}
	d, err := softdak.Open(testDAK.init.Key, testDAK.init.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := pki.LoadProfile("../../fixtures/profiles/device.conf", pki.ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &fixture{signer: &countingSigner{Signer: d}, dir: dir, profile: prof}
	f.open(t, max)
	return f
}

// open (re)opens the ledger and audit log in the fixture's directory, as a restarted station does.
func (f *fixture) open(t *testing.T, max int64) {
	t.Helper()
	lg, err := ledger.OpenSQLite(filepath.Join(f.dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(filepath.Join(f.dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	chain := f.signer.Chain()
	f.ledger, f.audit = lg, log
	f.p = &Pipeline{
		Certs:  &pki.Issuer{Profile: f.profile, Signer: f.signer, CA: chain[0], Intermediates: chain[1:]},
		Ledger: lg, Audit: log, MaxSignatures: max, Station: "test", RunID: "run1",
		TrustAnchors: []*x509.Certificate{testDAK.init.Root},
	}
	t.Cleanup(func() { f.p.Close() })
}

type deviceKey struct{ k *ecdsa.PrivateKey }

func newKey(t *testing.T) deviceKey { return newKeyB(t) }

func newKeyB(t testing.TB) deviceKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return deviceKey{k}
}

// csr is a fresh CSR for the key (a new ECDSA signature each time, as a device prints it).
func (f *fixture) csr(t *testing.T, k deviceKey) []byte { return f.csrB(t, k) }

func (f *fixture) csrB(t testing.TB, k deviceKey) []byte {
	t.Helper()
	var names []pkix.AttributeTypeAndValue
	for _, fl := range f.profile.Subject {
		names = append(names, pkix.AttributeTypeAndValue{Type: fl.OID, Value: fl.Value})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{ExtraNames: names}, SignatureAlgorithm: x509.ECDSAWithSHA256}, k.k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func (f *fixture) budget(t *testing.T) int64 {
	b, err := f.ledger.Budget(context.Background(), f.p.DAKSHA256())
	if err != nil {
		t.Fatal(err)
	}
	return b.Used
}

func (f *fixture) check(t *testing.T) {
	t.Helper()
	problems, err := f.ledger.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("ledger check: %+v", problems)
	}
}

func TestIssueOncePerKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	k := newKey(t)
	first, reused, err := f.p.IssueResult(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)})
	if err != nil || reused {
		t.Fatalf("first issue: reused=%v err=%v", reused, err)
	}
	if err := device.Verify(first.Chain, first, f.p.Roots(), first.Certificate.NotBefore); err != nil {
		t.Fatalf("issued chain does not verify: %v", err)
	}
	// The same key with a new CSR (a rerun after a crash): the same chain, no signature.
	again, reused, err := f.p.IssueResult(ctx, device.IssueRequest{Target: "dut7", CSRPEM: f.csr(t, k)})
	if err != nil || !reused {
		t.Fatalf("second issue: reused=%v err=%v", reused, err)
	}
	if string(again.ChainPEM) != string(first.ChainPEM) {
		t.Fatal("second issue for the same key returned another chain")
	}
	if n := f.signer.n.Load(); n != 1 {
		t.Fatalf("DAK signed %d times for one key, want 1", n)
	}
	if used := f.budget(t); used != 1 {
		t.Fatalf("budget used %d, want 1", used)
	}
	if f.audit.Len() != 1 {
		t.Fatalf("audit log has %d records, want 1", f.audit.Len())
	}
	known, err := f.p.Lookup(ctx, k.k.Public())
	if err != nil || known == nil || known.State != string(ledger.Issued) || known.Issued == nil {
		t.Fatalf("lookup: %+v, %v", known, err)
	}
	if err := f.p.Stored(ctx, first.Certificate); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Verified(ctx, first.Certificate); err != nil {
		t.Fatal(err)
	}
	known, _ = f.p.Lookup(ctx, k.k.Public())
	if known.State != string(ledger.Verified) {
		t.Fatalf("state after Verified: %s", known.State)
	}
	unknown, err := f.p.Lookup(ctx, newKey(t).k.Public())
	if err != nil || unknown != nil {
		t.Fatalf("lookup of an unknown key: %+v, %v", unknown, err)
	}
	f.check(t)
}

// A crash after the reservation and before the chain was recorded: the rerun signs again under
// the same record, and the budget counts both signatures.
func TestInterruptedReservationIsSignedAgain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	k := newKey(t)
	c, err := f.p.Check(device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)})
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := f.ledger.Reserve(ctx, ledger.Reservation{DeviceKey: c.DeviceKey, Target: "dut1", Station: "test",
		RunID: "crashed", DAKSHA256: f.p.DAKSHA256(), CSRSHA256: "00"})
	if err != nil {
		t.Fatal(err)
	}
	is, reused, err := f.p.IssueResult(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)})
	if err != nil || reused {
		t.Fatalf("issue after an interrupted reservation: reused=%v err=%v", reused, err)
	}
	got, err := f.ledger.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ledger.Issued || got.Signatures != 2 || got.CertSHA256 != pki.Fingerprint(is.Certificate) {
		t.Fatalf("record after re-signing: state %s, signatures %d", got.State, got.Signatures)
	}
	if used := f.budget(t); used != 2 {
		t.Fatalf("budget used %d, want 2 (the interrupted signature may have been made)", used)
	}
	recs, _ := f.ledger.List(ctx, ledger.Filter{})
	if len(recs) != 1 {
		t.Fatalf("%d records for one device key, want 1", len(recs))
	}
	f.check(t)
}

func TestBudgetExhaustedSignsNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	for i := range 2 {
		if _, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut", CSRPEM: f.csr(t, newKey(t))}); err != nil {
			t.Fatalf("issue %d: %v", i, err)
		}
	}
	_, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut3", CSRPEM: f.csr(t, newKey(t))})
	var be *BudgetError
	if !errors.Is(err, ledger.ErrBudgetExhausted) || !errors.As(err, &be) || be.Used != 2 || be.Max != 2 {
		t.Fatalf("third issue with a budget of 2: %v", err)
	}
	if n := f.signer.n.Load(); n != 2 {
		t.Fatalf("DAK signed %d times, want 2", n)
	}
	recs, _ := f.ledger.List(ctx, ledger.Filter{})
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2 (nothing reserved past the budget)", len(recs))
	}
	f.check(t)
}

func TestBadCSRReservesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	csr := f.csr(t, newKey(t))
	csr[len(csr)/2] ^= 0x01 // one flipped bit in the base64
	if _, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: csr}); err == nil {
		t.Fatal("a damaged CSR was issued for")
	}
	recs, _ := f.ledger.List(ctx, ledger.Filter{})
	if len(recs) != 0 || f.signer.n.Load() != 0 || f.budget(t) != 0 {
		t.Fatalf("a bad CSR left %d records, %d signatures, budget %d", len(recs), f.signer.n.Load(), f.budget(t))
	}
}

func TestReprovisionReplacesTheOldRecord(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	old, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, newKey(t))})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.Verified(ctx, old.Certificate); err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	fresh, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k), Replaces: old.Certificate})
	if err != nil {
		t.Fatal(err)
	}
	if known, _ := f.p.Lookup(ctx, old.Certificate.PublicKey); known != nil {
		t.Fatalf("the replaced key still has a live record: %+v", known)
	}
	recs, _ := f.ledger.List(ctx, ledger.Filter{State: ledger.Replaced})
	if len(recs) != 1 || recs[0].CertSHA256 != pki.Fingerprint(old.Certificate) || recs[0].ReplacedBy == 0 {
		t.Fatalf("replaced records: %+v", recs)
	}
	if known, _ := f.p.Lookup(ctx, k.k.Public()); known == nil || known.Issued.Certificate.SerialNumber.Cmp(fresh.Certificate.SerialNumber) != 0 {
		t.Fatal("the new key's record is not the new certificate")
	}
	f.check(t)
}

// A ledger deleted (or rolled back) under an audit log that records more: the station refuses
// to sign before touching a device.
func TestLedgerBehindAuditLogIsRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 10)
	for range 3 {
		if _, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut", CSRPEM: f.csr(t, newKey(t))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.p.CheckBudgetFloor(ctx); err != nil {
		t.Fatalf("a consistent ledger was refused: %v", err)
	}
	f.p.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(f.dir, "ledger.db"+suffix))
	}
	f.open(t, 10)
	err := f.p.CheckBudgetFloor(ctx)
	if !errors.Is(err, ErrLedgerBehind) {
		t.Fatalf("a deleted ledger under an audit log of 3: %v", err)
	}
}

// failingLedger loses its connection when asked to record the certificate.
type failingLedger struct {
	ledger.Store
	failIssue bool
}

func (l *failingLedger) Issue(ctx context.Context, id int64, c ledger.Certificate) error {
	if l.failIssue {
		return ledger.ErrUnavailable
	}
	return l.Store.Issue(ctx, id, c)
}

// ReserveIssued records an in-process signature: the certificate, so it fails too.
func (l *failingLedger) ReserveIssued(ctx context.Context, r ledger.Reservation, c ledger.Certificate) (*ledger.Record, ledger.Budget, error) {
	if l.failIssue {
		return nil, ledger.Budget{}, ledger.ErrUnavailable
	}
	return l.Store.ReserveIssued(ctx, r, c)
}

// outOfProcess is the counted DAK as a key outside the process (a YubiKey): counted before it
// signs, one signature at a time.
type outOfProcess struct{ *countingSigner }

func (outOfProcess) InProcess() bool { return false }

// The ledger fails after signing: the chain is held back (the device never gets a chain the
// ledger does not hold). A key outside the process signed under a reservation: the next try
// signs again under the same record. An in-process key signed ahead: its signature was never
// counted nor recorded, and the next try signs (once) as for a new device.
func TestLedgerLostAfterSigningHoldsTheChainBack(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		name := "key outside the process"
		if inProcess {
			name = "in-process key"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, 0)
			if !inProcess {
				f.p.Certs.Signer = outOfProcess{f.signer}
			}
			fl := &failingLedger{Store: f.ledger, failIssue: true}
			f.p.Ledger = fl
			k := newKey(t)
			is, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)})
			if is != nil || !errors.Is(err, ledger.ErrUnavailable) {
				t.Fatalf("issue with the ledger gone: %v, %v", is, err)
			}
			fl.failIssue = false
			if _, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)}); err != nil {
				t.Fatal(err)
			}
			recs, _ := f.ledger.List(ctx, ledger.Filter{})
			want := 2
			if inProcess {
				want = 1
			}
			if len(recs) != 1 || recs[0].Signatures != want || recs[0].State != ledger.Issued {
				t.Fatalf("records: %+v", recs)
			}
			if n := f.signer.n.Load(); n != 2 {
				t.Fatalf("%d signatures, want 2", n)
			}
			f.check(t)
		})
	}
}

// A station that stopped after the ledger recorded an in-process signature and before the
// audit log did: the chain never left. The next request for the key gets the ledger's chain,
// and the audit log holds it before it leaves; once, however often it is asked for.
func TestLedgerAheadOfAuditLogAfterACrash(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	k := newKey(t)
	csr := f.csr(t, k)
	c, err := f.p.Check(device.IssueRequest{Target: "dut1", CSRPEM: csr})
	if err != nil {
		t.Fatal(err)
	}
	// The crash: signed and recorded in the ledger, not in the audit log.
	is, err := f.p.Certs.IssueChecked(c.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ledger.ReserveIssued(ctx, ledger.Reservation{DeviceKey: c.DeviceKey, Target: "dut1", Station: f.p.Station,
		DAKSHA256: f.p.DAKSHA256(), CSRSHA256: audit.SHA256Hex(c.CSR.Raw), Holder: "gone:1:1"}, ledgerCertificate(is)); err != nil {
		t.Fatal(err)
	}
	f.p.Close()
	f.open(t, 0)
	if err := f.p.CheckBudgetFloor(ctx); err != nil {
		t.Fatalf("the ledger ahead of the audit log: %v", err)
	}
	// A lookup's answer may leave too (the signing agent answers a key with a chain from it).
	known, err := f.p.Lookup(ctx, k.k.Public())
	if err != nil || known == nil || known.Issued == nil || string(known.Issued.ChainPEM) != string(is.ChainPEM) {
		t.Fatalf("lookup after the crash: %+v, %v", known, err)
	}
	if f.audit.Len() != 1 {
		t.Fatalf("the lookup answered with a chain the audit log does not hold (%d records)", f.audit.Len())
	}
	for range 2 {
		got, reused, err := f.p.IssueResult(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)})
		if err != nil || !reused || string(got.ChainPEM) != string(is.ChainPEM) {
			t.Fatalf("issue after the crash: reused=%v, %v", reused, err)
		}
	}
	if n, lines := f.signer.n.Load(), f.audit.Len(); n != 1 || lines != 1 {
		t.Fatalf("%d signatures, %d audit records; want 1 and 1", n, lines)
	}
	rec, ok := f.audit.Find(audit.SHA256Hex(c.CSR.Raw))
	if !ok || rec.CertSHA256 != pki.Fingerprint(is.Certificate) || rec.ChainPEM != string(is.ChainPEM) {
		t.Fatalf("audit record %+v, %v", rec, ok)
	}
	if err := f.p.CheckBudgetFloor(ctx); err != nil {
		t.Fatal(err)
	}
	f.check(t)
}

// Near the end of the DAK's budget an in-process key signs only once reserved, so the ledger
// does not refuse a signature already made; at the end nothing is signed.
func TestNearTheBudgetEndReservesFirst(t *testing.T) {
	ctx := context.Background()
	max := int64(SignAheadMargin + 3)
	f := newFixture(t, max)
	issue := func() error {
		_, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut", CSRPEM: f.csr(t, newKey(t))})
		return err
	}
	for range 2 {
		if err := issue(); err != nil {
			t.Fatal(err)
		}
	}
	// Other stations' signatures bring the count to one short of the maximum.
	if err := f.ledger.SetBudgetFloor(ctx, f.p.DAKSHA256(), max-1); err != nil {
		t.Fatal(err)
	}
	if err := issue(); err != nil {
		t.Fatal(err)
	}
	if err := issue(); !errors.Is(err, ledger.ErrBudgetExhausted) {
		t.Fatalf("past the budget: %v", err)
	}
	if n, used := f.signer.n.Load(), f.budget(t); n != 3 || used != max {
		t.Fatalf("%d signatures, budget used %d; want 3 and %d", n, used, max)
	}
	f.check(t)
}

// Many slots issuing at once on one pipeline: one signature per key, none lost.
func TestConcurrentIssue(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	keys := make([]deviceKey, 16)
	for i := range keys {
		keys[i] = newKey(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(keys))
	for range 2 {
		for _, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut", CSRPEM: f.csr(t, k)}); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.signer.n.Load(); n != int64(len(keys)) {
		t.Fatalf("%d signatures for %d keys", n, len(keys))
	}
	f.check(t)
}

// openssl judges a chain the pipeline issued.
func TestOpenSSLVerifiesIssuedChain(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	f := newFixture(t, 0)
	is, err := f.p.Issue(context.Background(), device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, newKey(t))})
	if err != nil {
		t.Fatal(err)
	}
	leaf := filepath.Join(t.TempDir(), "leaf.pem")
	os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Certificate.Raw}), 0o644)
	out, err := exec.Command("openssl", "verify", "-CAfile", testDAK.init.RootCertificate,
		"-untrusted", testDAK.init.Certificate, leaf).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

// The audit log fails after signing: the chain is held back, nothing more is signed while it
// cannot be recorded, and once the log can be written again the held-back certificate is
// recorded and delivered without a second signature.
func TestAuditFailureHoldsBackAndSignsNothingMore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	good := f.p.Audit
	broken, err := audit.Open(filepath.Join(t.TempDir(), "broken.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	broken.Close() // every Append fails
	f.p.Audit = broken
	k := newKey(t)
	if is, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)}); is != nil || !errors.Is(err, ErrAudit) {
		t.Fatalf("issue with a broken audit log: %v, %v", is, err)
	}
	other := newKey(t)
	if _, err := f.p.Issue(ctx, device.IssueRequest{Target: "dut2", CSRPEM: f.csr(t, other)}); !errors.Is(err, ErrAudit) {
		t.Fatalf("another device while a certificate is held back: %v", err)
	}
	if n := f.signer.n.Load(); n != 1 {
		t.Fatalf("%d signatures while the audit log is broken, want 1", n)
	}
	f.p.Audit = good
	is, reused, err := f.p.IssueResult(ctx, device.IssueRequest{Target: "dut1", CSRPEM: f.csr(t, k)})
	if err != nil || !reused {
		t.Fatalf("retry after the repair: reused=%v %v", reused, err)
	}
	if n := f.signer.n.Load(); n != 1 || good.Len() != 1 {
		t.Fatalf("after the repair: %d signatures, %d audit records; want 1 and 1", n, good.Len())
	}
	if known, _ := f.p.Lookup(ctx, k.k.Public()); known == nil || known.State != string(ledger.Issued) ||
		string(known.Issued.ChainPEM) != string(is.ChainPEM) {
		t.Fatalf("ledger after the repair: %+v", known)
	}
	f.check(t)
}

// Two stations with their own copies of one DAK share a PostgreSQL ledger: racing for its last
// signatures they never exceed the maximum together, and no device is signed twice.
func TestTwoStationsShareOneBudgetOnPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	const max = 12
	var stations [2]*fixture
	for i := range stations {
		f := newFixture(t, max)
		pg, err := ledger.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		f.p.Ledger.Close()
		f.p.Ledger, f.ledger = pg, pg
		f.p.Holder = fmt.Sprintf("station%d.lab:%d:1", i, 100+i) // two hosts
		stations[i] = f
	}
	keys := make([]deviceKey, 20)
	for i := range keys {
		keys[i] = newKey(t)
	}
	var wg sync.WaitGroup
	var issued, exhausted atomic.Int64
	errs := make(chan error, 2*len(keys))
	for _, f := range stations {
		for _, k := range keys { // both stations see every device: a device moved between lines
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, reused, err := f.p.IssueResult(ctx, device.IssueRequest{Target: "slot", CSRPEM: f.csr(t, k)})
				switch {
				case errors.Is(err, ledger.ErrBudgetExhausted):
					exhausted.Add(1)
				case errors.Is(err, ledger.ErrLiveRecord):
					// the other station holds this key's reservation at this moment
				case err != nil:
					errs <- err
				case !reused:
					issued.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	signed := stations[0].signer.n.Load() + stations[1].signer.n.Load()
	if issued.Load() != max || signed != max || exhausted.Load() == 0 {
		t.Fatalf("issued %d, signed %d, refused for the budget %d; want %d, %d, > 0", issued.Load(), signed, exhausted.Load(), max, max)
	}
	if used := stations[0].budget(t); used != max {
		t.Fatalf("budget used %d, want %d", used, max)
	}
	recs, err := stations[0].ledger.List(ctx, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != max {
		t.Fatalf("%d records, want %d", len(recs), max)
	}
	stations[0].check(t)
}

// A reservation another process holds is never signed for twice: refused while that process
// runs (or, on another host, within the lease), taken over once it is gone.
func TestReservationHeldElsewhere(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 0)
	host, _ := os.Hostname()
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	alive := fmt.Sprintf("%s:%d:%s", host, sleeper.Process.Pid, processStart(sleeper.Process.Pid))
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("%s:%d:%s", host, done.Process.Pid, "12345")
	for _, tc := range []struct {
		name      string
		holder    string
		leaseOver bool
		signs     bool
	}{
		{"a running process on this host", alive, true, false},
		{"a process on this host that is gone", dead, false, true},
		{"another host within the lease", "station9.lab:77:1", false, false},
		{"another host past the lease", "station9.lab:77:1", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKey(t)
			c, err := f.p.Check(device.IssueRequest{Target: "dut", CSRPEM: f.csr(t, k)})
			if err != nil {
				t.Fatal(err)
			}
			rec, _, err := f.ledger.Reserve(ctx, ledger.Reservation{DeviceKey: c.DeviceKey, Target: "dut", DAKSHA256: f.p.DAKSHA256(),
				CSRSHA256: "00", Holder: tc.holder})
			if err != nil {
				t.Fatal(err)
			}
			before := f.signer.n.Load()
			// A lease shorter than the reservation's age has run out.
			f.p.ReservationLease = DefaultReservationLease
			if tc.leaseOver {
				f.p.ReservationLease = time.Nanosecond
			}
			_, err = f.p.Issue(ctx, device.IssueRequest{Target: "dut", CSRPEM: f.csr(t, k)})
			signed := f.signer.n.Load() - before
			if tc.signs {
				if err != nil || signed != 1 {
					t.Fatalf("held by %s: %v, %d signatures; want it taken over", tc.holder, err, signed)
				}
				got, _ := f.ledger.Get(ctx, rec.ID)
				if got.State != ledger.Issued || got.Signatures != 2 || got.Holder != f.p.holder() {
					t.Fatalf("record after the takeover: %+v", got)
				}
			} else if !errors.Is(err, ledger.ErrLiveRecord) || signed != 0 {
				t.Fatalf("held by %s: %v, %d signatures; want refused, nothing signed", tc.holder, err, signed)
			}
		})
	}
	f.p.ReservationLease = 0
}

// Two DAKs on one ledger: each counts its own budget, a device keeps the identity the first
// DAK gave it (the second signs nothing for it), and the ledger stays consistent.
func TestTwoDAKsOnOneLedger(t *testing.T) {
	ctx := context.Background()
	a := newFixture(t, 2)
	other, err := softdak.InitDevelopment(filepath.Join(t.TempDir(), "dak2"), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := softdak.Open(other.Key, other.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	b := &fixture{signer: &countingSigner{Signer: d2}, dir: a.dir, profile: a.profile}
	b.open(t, 2) // the same ledger file and audit log
	if a.p.DAKSHA256() == b.p.DAKSHA256() {
		t.Fatal("the two development DAKs are the same")
	}
	ka, kb := newKey(t), newKey(t)
	if _, err := a.p.Issue(ctx, device.IssueRequest{Target: "dut1", CSRPEM: a.csr(t, ka)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.p.Issue(ctx, device.IssueRequest{Target: "dut2", CSRPEM: b.csr(t, kb)}); err != nil {
		t.Fatal(err)
	}
	// The device DAK A certified comes to a station with DAK B: its chain, nothing signed.
	is, reused, err := b.p.IssueResult(ctx, device.IssueRequest{Target: "dut1", CSRPEM: b.csr(t, ka)})
	if err != nil || !reused || is.Chain[1].Equal(b.signer.Chain()[0]) {
		t.Fatalf("DAK B for a device DAK A certified: reused=%v err=%v", reused, err)
	}
	if a.budget(t) != 1 || b.budget(t) != 1 || a.signer.n.Load() != 1 || b.signer.n.Load() != 1 {
		t.Fatalf("budgets %d and %d, signatures %d and %d; want 1 each", a.budget(t), b.budget(t), a.signer.n.Load(), b.signer.n.Load())
	}
	a.check(t)
}

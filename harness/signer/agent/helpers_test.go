package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/issue"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/softdak"
)

// testDAK is one development DAK per test binary (softdak.InitDevelopment).
var testDAK struct {
	sync.Once
	dir  string
	init *softdak.InitResult
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testDAK.dir != "" {
		os.RemoveAll(testDAK.dir)
	}
	os.Exit(code)
}

// dak opens the test DAK; roots are what issued chains verify to.
func dak(tb testing.TB) (*softdak.SoftDAK, *softdak.InitResult) {
	tb.Helper()
	testDAK.Do(func() {
		dir, err := os.MkdirTemp("", "agentdak")
		if err != nil {
			testDAK.err = err
			return
		}
		testDAK.dir = dir
		testDAK.init, testDAK.err = softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{})
	})
	if testDAK.err != nil {
		tb.Fatal(testDAK.err)
	}
	d, err := softdak.Open(testDAK.init.Key, testDAK.init.Certificate)
	if err != nil {
		tb.Fatal(err)
	}
	return d, testDAK.init
}

var profileOnce struct {
	sync.Once
	p   *pki.Profile
	err error
}

func profile(tb testing.TB) *pki.Profile {
	tb.Helper()
	profileOnce.Do(func() {
		profileOnce.p, profileOnce.err = pki.LoadProfile("../../../fixtures/profiles/device.conf", pki.ProfileOptions{})
	})
	if profileOnce.err != nil {
		tb.Fatal(profileOnce.err)
	}
	return profileOnce.p
}

// makeCSR makes a CSR the profile accepts; override replaces subject
// attribute values by name (e.g. "DeviceTypeId").
func makeCSR(tb testing.TB, override map[string]string) []byte {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return csrFor(tb, k, override)
}

// csrFor is a CSR the profile accepts for the device key k.
func csrFor(tb testing.TB, k *ecdsa.PrivateKey, override map[string]string) []byte {
	tb.Helper()
	var names []pkix.AttributeTypeAndValue
	for _, f := range profile(tb).Subject {
		v := f.Value
		if o, ok := override[f.Name]; ok {
			v = o
		}
		names = append(names, pkix.AttributeTypeAndValue{Type: f.OID, Value: v})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{ExtraNames: names}, SignatureAlgorithm: x509.ECDSAWithSHA256}, k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func makeCSRs(tb testing.TB, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = makeCSR(tb, nil)
	}
	return out
}

// fakeSigner wraps a real DAK: it counts signatures and can hold each one
// until the test releases it (a slow YubiKey under the test's control), or
// sleep (a YubiKey's ~70 ms), or fail.
type fakeSigner struct {
	signer.Signer
	calls   atomic.Int64
	started chan struct{} // if set, receives once per signature as it starts
	release chan struct{} // if set, each signature waits for one value
	delay   time.Duration
	fail    error
}

func (f *fakeSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	f.calls.Add(1)
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.release != nil {
		<-f.release
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.fail != nil {
		return nil, f.fail
	}
	return f.Signer.Sign(r, digest, opts)
}

// shortDir is a private directory with a short path (sun_path is 108 bytes).
func shortDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "ag")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// state is what an agent keeps between runs: the ledger (SQLite, the DAK's
// budget with it) and the audit log.
type state struct {
	dir    string
	max    int64
	ledger *ledger.SQLiteStore
	audit  *audit.Log
	once   sync.Once
}

// openState opens (or creates) the ledger and audit log in dir; max is the
// DAK's budget (<= 0: unlimited).
func openState(tb testing.TB, dir string, max int64) *state {
	tb.Helper()
	lg, err := ledger.OpenSQLite(filepath.Join(dir, "ledger.db"))
	if err != nil {
		tb.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		lg.Close()
		tb.Fatal(err)
	}
	st := &state{dir: dir, max: max, ledger: lg, audit: l}
	tb.Cleanup(st.close)
	return st
}

func (st *state) close() {
	st.once.Do(func() {
		st.ledger.Close()
		st.audit.Close()
	})
}

// pipeline issues with s through the state's ledger and audit log.
func (st *state) pipeline(tb testing.TB, s signer.Signer) *issue.Pipeline {
	_, dev := dak(tb)
	chain := s.Chain()
	return &issue.Pipeline{
		Certs:         &pki.Issuer{Profile: profile(tb), Signer: s, CA: chain[0], Intermediates: chain[1:]},
		Ledger:        st.ledger,
		Audit:         st.audit,
		MaxSignatures: st.max,
		Station:       "test-station",
		RunID:         tb.Name(),
		TrustAnchors:  []*x509.Certificate{dev.Root},
	}
}

// used is the DAK's signature count in the ledger.
func (st *state) used(tb testing.TB) int64 {
	tb.Helper()
	d, _ := dak(tb)
	b, err := st.ledger.Budget(context.Background(), audit.SHA256Hex(d.Chain()[0].Raw))
	if err != nil {
		tb.Fatal(err)
	}
	return b.Used
}

// live is the ledger's live record of the key certified by leaf.
func (st *state) live(tb testing.TB, pub crypto.PublicKey) *ledger.Record {
	tb.Helper()
	key, err := ledger.KeyHash(pub)
	if err != nil {
		tb.Fatal(err)
	}
	rec, err := st.ledger.Live(context.Background(), key)
	if err != nil {
		tb.Fatalf("live record: %v", err)
	}
	return rec
}

// running is an agent started by start.
type running struct {
	path   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop cancels the agent and returns Serve's result.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

// start runs srv on socket path and waits until it accepts connections.
func start(tb testing.TB, srv *Server, path string) *running {
	tb.Helper()
	if srv.Logf == nil {
		srv.Logf = func(format string, args ...any) {
			if testing.Verbose() {
				tb.Logf(format, args...)
			}
		}
	}
	ready := make(chan struct{})
	srv.OnReady = func(string) { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{path: path, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx, path) }()
	select {
	case <-ready:
	case err := <-r.done:
		cancel()
		tb.Fatalf("agent did not start: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.stop(); err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return r
}

// newServer is an agent for the DAK s with state st (nil: a fresh one,
// unlimited budget).
func newServer(tb testing.TB, s signer.Signer, st *state) *Server {
	if st == nil {
		st = openState(tb, tb.TempDir(), 0)
	}
	return &Server{Pipeline: st.pipeline(tb, s)}
}

func dial(tb testing.TB, path string) *Client {
	tb.Helper()
	c, err := Dial(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls the agent's status until cond holds. Its generous limit only
// turns a hang into a failure that names what never happened.
func waitFor(tb testing.TB, c *Client, what string, cond func(*Status) bool) {
	tb.Helper()
	limit := time.Now().Add(time.Minute)
	for {
		if time.Now().After(limit) {
			tb.Fatalf("%s never happened", what)
		}
		st, err := c.Status(context.Background())
		if err != nil {
			tb.Fatalf("waiting for %s: %v", what, err)
		}
		if cond(st) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

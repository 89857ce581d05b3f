package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/issue"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/budget"
)

func TestIssueThroughAgentVerifies(t *testing.T) {
	d, dev := dak(t)
	st := openState(t, shortDir(t), 100)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, st), path)
	c := dial(t, path)

	csr := makeCSR(t, nil)
	res, err := c.IssueResult(context.Background(), "slot1/dev-0001", csr)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.VerifyChain(res.Chain, []*x509.Certificate{dev.Root}, time.Now()); err != nil {
		t.Fatalf("chain does not verify to the development root: %v", err)
	}
	if len(res.Chain) != 2 || !res.Chain[1].Equal(dev.DAK) {
		t.Fatalf("chain is not leaf + DAK: %d certificates", len(res.Chain))
	}
	if res.CSR == nil || !pki.SamePublicKey(res.CSR.PublicKey, res.Certificate.PublicKey) {
		t.Fatal("Issued.CSR missing or not the CSR sent")
	}
	if res.Reused || res.Budget == nil || res.Budget.Used != 1 || res.Budget.Max != 100 || res.Warning != "" {
		t.Fatalf("result %+v budget %+v", res, res.Budget)
	}
	if res.Serial != audit.SerialHex(res.Certificate) || res.SHA256 != audit.SHA256Hex(res.Certificate.Raw) {
		t.Fatalf("serial %s sha %s", res.Serial, res.SHA256)
	}
	if st.used(t) != 1 {
		t.Fatalf("budget used %d", st.used(t))
	}
	// The ledger holds the chain, filed under the device key.
	if rec := st.live(t, res.Certificate.PublicKey); rec.State != ledger.Issued || rec.Target != "slot1/dev-0001" ||
		rec.CertSHA256 != res.SHA256 || rec.ChainPEM != string(res.ChainPEM) || rec.Signatures != 1 || rec.Station != "test-station" {
		t.Fatalf("ledger record %+v", rec)
	}

	// The audit record was written before the answer.
	rec, ok := st.audit.Find(res.CSRSHA256)
	if !ok {
		t.Fatal("no audit record")
	}
	if rec.Target != "slot1/dev-0001" || rec.ChainPEM != string(res.ChainPEM) || rec.Serial != res.Serial ||
		rec.DAKSHA256 != audit.SHA256Hex(dev.DAK.Raw) || rec.BudgetUsed != 1 {
		t.Fatalf("audit record %+v", rec)
	}
	if rec.Client == nil || rec.Client.PID != os.Getpid() || rec.Client.UID != os.Getuid() || rec.RequestID == "" {
		t.Fatalf("audit client %+v request %q, want pid %d uid %d", rec.Client, rec.RequestID, os.Getpid(), os.Getuid())
	}

	// The independent judge.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	leaf := filepath.Join(dir, "device-certificate.pem")
	os.WriteFile(leaf, pki.EncodeChainPEM(res.Chain[:1]), 0o600)
	out, err := exec.Command("openssl", "verify", "-CAfile", dev.RootCertificate, "-untrusted", dev.Certificate, leaf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func TestStatus(t *testing.T) {
	d, dev := dak(t)
	st := openState(t, shortDir(t), 50)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, st), path)
	c := dial(t, path)
	if _, err := c.Issue(context.Background(), "t", makeCSR(t, nil)); err != nil {
		t.Fatal(err)
	}
	s, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.DAK != d.Description() || s.DAKSHA256 != audit.SHA256Hex(dev.DAK.Raw) || s.Budget == nil ||
		s.Budget.Used != 1 || s.Budget.Max != 50 || s.Budget.Remaining != 49 || s.Issued != 1 ||
		s.Queue != 0 || s.Clients != 1 || s.PID != os.Getpid() || s.Uptime() <= 0 || s.AuditLog != st.audit.Path() ||
		s.Ledger != st.ledger.Describe() || s.LedgerError != "" {
		t.Fatalf("status %+v", s)
	}
}

func TestBadCSRRejectedWithoutSpendingBudget(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, fs, st), path)
	c := dial(t, path)

	_, err := c.Issue(context.Background(), "slot1", makeCSR(t, map[string]string{"DeviceTypeId": "WRONGTYPE"}))
	if !errors.Is(err, pki.ErrCSRRejected) || !errors.Is(err, pki.ErrDeviceType) {
		t.Fatalf("wrong device type: %v", err)
	}
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeCSRRejected || ae.Reason != "device_type" || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("error %#v", err)
	}
	// A CSR that is PEM but not a CSR.
	notCSR := []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	if _, err := c.Issue(context.Background(), "slot1", notCSR); !errors.Is(err, pki.ErrCSRRejected) {
		t.Fatalf("garbage CSR: %v", err)
	}
	if st.used(t) != 0 || fs.calls.Load() != 0 || st.audit.Len() != 0 {
		t.Fatalf("a refused CSR spent budget %d / signed %d / audited %d", st.used(t), fs.calls.Load(), st.audit.Len())
	}
	if recs, err := st.ledger.List(context.Background(), ledger.Filter{}); err != nil || len(recs) != 0 {
		t.Fatalf("a refused CSR left ledger records: %v %v", recs, err)
	}
	s, _ := c.Status(context.Background())
	if s.Rejected != 2 {
		t.Fatalf("rejected %d", s.Rejected)
	}
}

func TestBudgetExhaustedAfterExactlyMax(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	stateDir := shortDir(t)
	st := openState(t, stateDir, 3)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, fs, st), path)
	c := dial(t, path)
	csrs := makeCSRs(t, 5)
	for i := range 3 {
		if _, err := c.Issue(context.Background(), "t", csrs[i]); err != nil {
			t.Fatalf("signature %d of 3: %v", i+1, err)
		}
	}
	_, err := c.Issue(context.Background(), "t", csrs[3])
	if !errors.Is(err, ledger.ErrBudgetExhausted) || !errors.Is(err, budget.ErrExhausted) {
		t.Fatalf("4th signature: %v, want budget_exhausted", err)
	}
	if !strings.Contains(err.Error(), "3/3") || !strings.Contains(err.Error(), "new DAK") {
		t.Fatalf("message %q", err)
	}
	if fs.calls.Load() != 3 || st.used(t) != 3 {
		t.Fatalf("signed %d, budget used %d", fs.calls.Load(), st.used(t))
	}
	// A retry of an issued CSR is still answered: it needs no signature.
	if res, err := c.IssueResult(context.Background(), "t", csrs[0]); err != nil || !res.Reused {
		t.Fatalf("retry after exhaustion: %+v %v", res, err)
	}

	// Across a restart, with the state reopened from disk.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st.close()
	st2 := openState(t, stateDir, 3)
	start(t, newServer(t, fs, st2), path)
	if _, err := c.Issue(context.Background(), "t", csrs[4]); !errors.Is(err, ledger.ErrBudgetExhausted) {
		t.Fatalf("after restart: %v", err)
	}
	if fs.calls.Load() != 3 || st2.used(t) != 3 {
		t.Fatalf("after restart: signed %d, budget used %d", fs.calls.Load(), st2.used(t))
	}
}

func TestBudgetExhaustedInTheQueue(t *testing.T) {
	// B's request passes the check and queues while A's signature is with
	// the key; meanwhile another station sharing the ledger spends the rest
	// of the budget. The reservation right before B's signature decides.
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, started: make(chan struct{}, 1), release: make(chan struct{})}
	stateDir := shortDir(t)
	st := openState(t, stateDir, 3)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, fs, st), path)
	a, b := dial(t, path), dial(t, path)
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := a.Issue(context.Background(), "a", makeCSR(t, nil)); errA <- err }()
	<-fs.started
	go func() { _, err := b.Issue(context.Background(), "b", makeCSR(t, nil)); errB <- err }()
	waitFor(t, a, "b queued", func(s *Status) bool { return s.Queue == 1 })
	otherStation, err := ledger.OpenSQLite(st.ledger.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer otherStation.Close()
	for i := range 2 {
		if _, _, err := otherStation.Reserve(context.Background(), ledger.Reservation{
			DeviceKey: fmt.Sprintf("%064x", i+1), Target: "other", Station: "other", DAKSHA256: audit.SHA256Hex(d.Chain()[0].Raw),
			CSRSHA256: fmt.Sprintf("%064x", i+1), MaxSignatures: 3}); err != nil {
			t.Fatal(err)
		}
	}
	fs.release <- struct{}{}
	if err := <-errA; err != nil {
		t.Fatalf("a: %v", err)
	}
	if err := <-errB; !errors.Is(err, ledger.ErrBudgetExhausted) {
		t.Fatalf("b: %v, want budget_exhausted", err)
	}
	if fs.calls.Load() != 1 || st.used(t) != 3 {
		t.Fatalf("signatures %d, budget %d", fs.calls.Load(), st.used(t))
	}
}

func TestBudgetWarningFrom90Percent(t *testing.T) {
	d, _ := dak(t)
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, st), path)
	c := dial(t, path)
	for i := int64(1); i <= 10; i++ {
		res, err := c.IssueResult(context.Background(), "t", makeCSR(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		if want := i >= 9; (res.Warning != "") != want {
			t.Fatalf("signature %d: warning %q", i, res.Warning)
		}
		if res.Budget.Used != i || res.Budget.Remaining != 10-i {
			t.Fatalf("signature %d: budget %+v", i, res.Budget)
		}
	}
}

func TestRetryReturnsIdenticalChain(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	stateDir := shortDir(t)
	st := openState(t, stateDir, 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, fs, st), path)
	c := dial(t, path)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr := csrFor(t, key, nil)
	first, err := c.IssueResult(context.Background(), "slot2", csr)
	if err != nil {
		t.Fatal(err)
	}
	// The same CSR again, also with CRLF line ends as a console may print
	// it, and a new CSR the device made for the same key.
	for _, again := range [][]byte{csr, bytes.ReplaceAll(csr, []byte("\n"), []byte("\r\n")), csrFor(t, key, nil)} {
		res, err := c.IssueResult(context.Background(), "slot2", again)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Reused || !bytes.Equal(res.ChainPEM, first.ChainPEM) {
			t.Fatalf("retry: reused %v, same chain %v", res.Reused, bytes.Equal(res.ChainPEM, first.ChainPEM))
		}
	}
	if fs.calls.Load() != 1 || st.used(t) != 1 || st.audit.Len() != 1 {
		t.Fatalf("retries signed %d / budget %d / records %d", fs.calls.Load(), st.used(t), st.audit.Len())
	}

	// After a restart the ledger answers.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st.close()
	st2 := openState(t, stateDir, 10)
	start(t, newServer(t, fs, st2), path)
	res, err := c.IssueResult(context.Background(), "slot2", csr) // the same Client: it redials
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reused || !bytes.Equal(res.ChainPEM, first.ChainPEM) || res.Serial != first.Serial {
		t.Fatalf("after restart: reused %v, same chain %v", res.Reused, bytes.Equal(res.ChainPEM, first.ChainPEM))
	}
	if fs.calls.Load() != 1 || st2.used(t) != 1 {
		t.Fatalf("after restart: signed %d, budget %d", fs.calls.Load(), st2.used(t))
	}
	s, _ := c.Status(context.Background())
	if s.Issued != 0 || s.Reused != 1 {
		t.Fatalf("status after restart: issued %d reused %d", s.Issued, s.Reused)
	}
}

func TestRetryWithoutAuditLog(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	st := openState(t, t.TempDir(), 0)
	srv := newServer(t, fs, st)
	srv.Pipeline.Audit = nil
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, srv, path)
	c := dial(t, path)
	csr := makeCSR(t, nil)
	a, err := c.IssueResult(context.Background(), "t", csr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.IssueResult(context.Background(), "t", csr)
	if err != nil {
		t.Fatal(err)
	}
	if a.Budget == nil || a.Budget.Used != 1 || a.Budget.Remaining != -1 || !b.Reused || !bytes.Equal(a.ChainPEM, b.ChainPEM) || fs.calls.Load() != 1 {
		t.Fatalf("budget %+v reused %v calls %d", a.Budget, b.Reused, fs.calls.Load())
	}
	if st.audit.Len() != 0 {
		t.Fatalf("%d audit records without an audit log", st.audit.Len())
	}
}

func TestSameCSRConcurrentlySignedOnce(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	st := openState(t, shortDir(t), 100)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, fs, st), path)
	csr := makeCSR(t, nil)
	chains := make([][]byte, 6)
	var wg sync.WaitGroup
	for i := range chains {
		c := dial(t, path)
		wg.Go(func() {
			is, err := c.Issue(context.Background(), fmt.Sprint("slot", i), csr)
			if err != nil {
				t.Error(err)
				return
			}
			chains[i] = is.ChainPEM
		})
	}
	wg.Wait()
	for _, ch := range chains[1:] {
		if !bytes.Equal(ch, chains[0]) {
			t.Fatal("two chains for one CSR")
		}
	}
	if fs.calls.Load() != 1 || st.used(t) != 1 {
		t.Fatalf("signed %d, budget %d", fs.calls.Load(), st.used(t))
	}
}

func TestFairnessAcrossClients(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, release: make(chan struct{})}
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, fs, nil), path)
	a, b, watch := dial(t, path), dial(t, path), dial(t, path)

	done := make(chan string)
	issue := func(c *Client, name string, csr []byte) {
		if _, err := c.Issue(context.Background(), name, csr); err != nil {
			t.Error(err)
		}
		done <- name
	}
	// A sends 20 requests; the first goes to the (held) key, 19 queue.
	for i, csr := range makeCSRs(t, 20) {
		go issue(a, fmt.Sprintf("A%02d", i), csr)
	}
	waitFor(t, watch, "A's 20 requests", func(s *Status) bool { return s.Signing && s.Queue == 19 })
	// Then B sends one.
	go issue(b, "B", makeCSR(t, nil))
	waitFor(t, watch, "B's request", func(s *Status) bool { return s.Queue == 20 })

	// Release one signature at a time and note who is answered.
	var order []string
	for range 21 {
		fs.release <- struct{}{}
		order = append(order, <-done)
	}
	pos := -1
	for i, n := range order {
		if n == "B" {
			pos = i
		}
	}
	// Round robin: A's signature in progress, then at most one more of A's
	// (A was first in the ring), then B.
	if pos < 0 || pos > 2 {
		t.Fatalf("B answered %dth of 21: %v", pos+1, order)
	}
}

func TestConcurrentClients(t *testing.T) {
	d, dev := dak(t)
	st := openState(t, shortDir(t), 0)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, st), path)
	const clients, each = 8, 5
	serials := make(chan string, clients*each)
	var wg sync.WaitGroup
	for i := range clients {
		c := dial(t, path)
		csrs := makeCSRs(t, each)
		wg.Go(func() {
			var inner sync.WaitGroup
			for j, csr := range csrs {
				// Several goroutines share each Client too.
				inner.Go(func() {
					res, err := c.IssueResult(context.Background(), fmt.Sprintf("c%d/%d", i, j), csr)
					if err != nil {
						t.Error(err)
						return
					}
					if err := pki.VerifyChain(res.Chain, []*x509.Certificate{dev.Root}, time.Now()); err != nil {
						t.Error(err)
					}
					serials <- res.Serial
				})
			}
			inner.Wait()
		})
	}
	wg.Wait()
	close(serials)
	seen := map[string]bool{}
	for s := range serials {
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
	if len(seen) != clients*each || st.used(t) != clients*each || st.audit.Len() != clients*each {
		t.Fatalf("%d certificates, budget %d, records %d", len(seen), st.used(t), st.audit.Len())
	}
}

// rawConn is a client speaking the protocol by hand.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, path string) *rawConn {
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 1<<20)}
}

func (r *rawConn) send(line []byte) {
	if _, err := r.nc.Write(line); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) read() response {
	line, err := r.br.ReadBytes('\n')
	if err != nil {
		r.t.Fatalf("reading answer: %v", err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		r.t.Fatalf("answer %q: %v", line, err)
	}
	return resp
}

func TestMalformedRequests(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, fs, st), path)
	csr, _ := json.Marshal(string(makeCSR(t, nil)))
	for _, tc := range []struct {
		name, line, id, want string
	}{
		{"not JSON", "hello agent", "", "not a valid request"},
		{"JSON array", `[1,2]`, "", "not a valid request"},
		{"trailing garbage", `{"op":"status"} x`, "", "not a valid request"},
		{"wrong type", `{"op":5}`, "", "not a valid request"},
		{"null", `null`, "", `no "op"`},
		{"no op", `{"id":"1"}`, "1", `no "op"`},
		{"unknown op", `{"op":"sign","id":"2"}`, "2", `unknown op "sign"`},
		{"no id", `{"op":"issue","target":"t","csr":` + string(csr) + `}`, "", "no id"},
		{"no target", `{"op":"issue","id":"3","csr":` + string(csr) + `}`, "3", "no target"},
		{"long target", `{"op":"issue","id":"4","target":"` + strings.Repeat("x", 300) + `","csr":` + string(csr) + `}`, "4", "at most 256"},
		{"no csr", `{"op":"issue","id":"5","target":"t"}`, "5", "no csr"},
		{"csr not PEM", `{"op":"issue","id":"6","target":"t","csr":"MIIBOTCB4AIBADB+"}`, "6", "not PEM"},
		{"bad device id", `{"op":"issue","id":"11","target":"t","device_id":"` + strings.Repeat("x", 300) + `","csr":` + string(csr) + `}`, "11", "device_id is 300 bytes"},
		{"replaces not PEM", `{"op":"issue","id":"12","target":"t","replaces":"MIIB","csr":` + string(csr) + `}`, "12", "replaces: not a certificate PEM"},
		{"lookup no id", `{"op":"lookup","key":"AAAA"}`, "", "no id"},
		{"lookup no key", `{"op":"lookup","id":"13"}`, "13", "no key"},
		{"lookup key not base64", `{"op":"lookup","id":"14","key":"%%%"}`, "14", "not base64"},
		{"lookup key not SPKI", `{"op":"lookup","id":"15","key":"AAAA"}`, "15", "not a SubjectPublicKeyInfo"},
		{"stored no certificate", `{"op":"stored","id":"16"}`, "16", "no certificate"},
		{"verified not PEM", `{"op":"verified","id":"17","certificate":"hello"}`, "17", "not a certificate PEM"},
		{"huge line", `{"op":"issue","id":"7","target":"t","csr":"` + strings.Repeat("A", MaxRequestLine) + `"}`, "", "longer than 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, path)
			c.send([]byte(tc.line + "\n"))
			resp := c.read()
			if resp.OK || resp.Error == nil || resp.Error.Code != CodeBadRequest || resp.ID != tc.id || !strings.Contains(resp.Error.Message, tc.want) {
				t.Fatalf("answer %+v %+v, want bad_request %q with id %q", resp, resp.Error, tc.want, tc.id)
			}
			// The connection still works.
			c.send([]byte(`{"op":"status","id":"s"}` + "\n"))
			if resp := c.read(); !resp.OK || resp.ID != "s" || resp.Status == nil {
				t.Fatalf("status after a bad request: %+v", resp)
			}
		})
	}
	// Exactly MaxRequestLine bytes is still read (and refused as not PEM).
	t.Run("longest line", func(t *testing.T) {
		c := rawDial(t, path)
		head := `{"op":"issue","id":"8","target":"t","csr":"`
		line := head + strings.Repeat("A", MaxRequestLine-len(head)-2) + `"}`
		c.send([]byte(line + "\n"))
		if resp := c.read(); resp.Error == nil || !strings.Contains(resp.Error.Message, "not PEM") {
			t.Fatalf("answer %+v", resp.Error)
		}
	})
	// A client that disconnects in the middle of a request, and one that
	// disconnects with a request queued, break nobody else.
	half := rawDial(t, path)
	half.send([]byte(`{"op":"issue","id":"9","target":"t","csr":"-----BEGIN CERT`))
	half.nc.Close()
	gone := rawDial(t, path)
	gone.send([]byte(`{"op":"issue","id":"10","target":"gone","csr":` + string(csr) + "}\n"))
	gone.nc.Close()
	c := dial(t, path)
	if _, err := c.Issue(context.Background(), "after", makeCSR(t, nil)); err != nil {
		t.Fatal(err)
	}
	if fs.calls.Load() > 2 || st.used(t) > 2 {
		t.Fatalf("signed %d", fs.calls.Load())
	}
	// Many requests on one connection before reading any answer.
	p := rawDial(t, path)
	var batch bytes.Buffer
	for i := range 50 {
		fmt.Fprintf(&batch, `{"op":"status","id":"%d"}`+"\n", i)
	}
	p.send(batch.Bytes())
	for i := range 50 {
		if resp := p.read(); resp.ID != fmt.Sprint(i) || !resp.OK {
			t.Fatalf("pipelined answer %d: %+v", i, resp)
		}
	}
}

func TestOversizedCSRRefusedByClient(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, nil), path)
	c := dial(t, path)
	_, err := c.Issue(context.Background(), "t", bytes.Repeat([]byte("A"), MaxRequestLine))
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("%v", err)
	}
}

func TestSignerFailure(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, fail: errors.New("YubiKey removed")}
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, fs, st), path)
	c := dial(t, path)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Issue(context.Background(), "t", csrFor(t, key, nil))
	if !errors.Is(err, ErrSignerFailed) || !strings.Contains(err.Error(), "YubiKey removed") {
		t.Fatalf("%v", err)
	}
	// The attempt is counted: the budget never under-counts. The record
	// stays reserved: a retry signs again under it.
	if st.used(t) != 1 || st.audit.Len() != 0 {
		t.Fatalf("budget %d records %d", st.used(t), st.audit.Len())
	}
	if rec := st.live(t, &key.PublicKey); rec.State != ledger.Reserved || rec.Signatures != 1 {
		t.Fatalf("ledger record %+v", rec)
	}
}

func TestAuditFailureHoldsTheCertificateBack(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	stateDir := shortDir(t)
	st := openState(t, stateDir, 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, fs, st), path)
	c := dial(t, path)
	st.audit.Close() // every Append now fails
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr := csrFor(t, key, nil)
	_, err = c.Issue(context.Background(), "t", csr)
	if !errors.Is(err, ErrAuditFailed) || !errors.Is(err, issue.ErrAudit) || !strings.Contains(err.Error(), "held back") {
		t.Fatalf("%v", err)
	}
	// Signed and counted, not delivered: the record stays reserved.
	if rec := st.live(t, &key.PublicKey); rec.State != ledger.Reserved || rec.Signatures != 1 || fs.calls.Load() != 1 || st.used(t) != 1 {
		t.Fatalf("ledger record %+v, signed %d, budget %d", rec, fs.calls.Load(), st.used(t))
	}
	// A retry signs nothing: the agent holds the first certificate back until the audit log
	// records it (a retry loop against a broken disk would spend the budget otherwise).
	if _, err := c.Issue(context.Background(), "t", csr); !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("retry: %v", err)
	}
	if rec := st.live(t, &key.PublicKey); rec.State != ledger.Reserved || rec.Signatures != 1 || fs.calls.Load() != 1 || st.used(t) != 1 {
		t.Fatalf("after the retry: ledger record %+v, signed %d, budget %d", rec, fs.calls.Load(), st.used(t))
	}

	// The disk is fixed and the agent restarted (the held-back certificate was in its memory):
	// the retry signs again under the same record and is delivered, recorded in both.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st.close()
	st2 := openState(t, stateDir, 10)
	start(t, newServer(t, fs, st2), path)
	res, err := c.IssueResult(context.Background(), "t", csr)
	if err != nil || res.Reused {
		t.Fatalf("after the repair: %+v %v", res, err)
	}
	rec := st2.live(t, &key.PublicKey)
	if rec.State != ledger.Issued || rec.Signatures != 2 || rec.CertSHA256 != res.SHA256 || st2.used(t) != 2 || st2.audit.Len() != 1 {
		t.Fatalf("after the repair: ledger record %+v, budget %d, audit records %d", rec, st2.used(t), st2.audit.Len())
	}
}

func TestSocketMode0600AndRemovedOnStop(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, d, nil), path)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want socket 0600", fi.Mode())
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".agent") {
			t.Fatalf("temporary directory %s left behind", e.Name())
		}
	}
}

func TestSocketDirectoryMustBePrivate(t *testing.T) {
	d, _ := dak(t)
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	err := newServer(t, d, nil).Serve(context.Background(), filepath.Join(dir, "agent.sock"))
	if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), "0777") {
		t.Fatalf("world-writable directory: %v", err)
	}
	if os.Geteuid() != 0 {
		return
	}
	other := shortDir(t)
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err = newServer(t, d, nil).Serve(context.Background(), filepath.Join(other, "agent.sock"))
	if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("directory of another user: %v", err)
	}
}

func TestSecondAgentOnSamePathRefused(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, nil), path)
	err := newServer(t, d, nil).Serve(context.Background(), path)
	var re *RunningError
	if !errors.As(err, &re) || re.PID != os.Getpid() || !strings.Contains(err.Error(), path) {
		t.Fatalf("second agent: %v", err)
	}
	// The first one still serves.
	if _, err := dial(t, path).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	// A socket file nobody listens on (an agent that was killed).
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, err = Dial(context.Background(), path)
	var ne *NoAgentError
	if !errors.As(err, &ne) || !ne.Stale || !strings.Contains(err.Error(), "hil signer serve --bench FILE") {
		t.Fatalf("stale socket: %v", err)
	}
	start(t, newServer(t, d, nil), path)
	if _, err := dial(t, path).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNotASocketNotReplaced(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	os.WriteFile(path, []byte("precious"), 0o600)
	if err := newServer(t, d, nil).Serve(context.Background(), path); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("%v", err)
	}
	if _, err := Dial(context.Background(), path); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("%v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "precious" {
		t.Fatal("file replaced")
	}
}

func TestMissingSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "agent.sock")
	_, err := Dial(context.Background(), path)
	if !errors.Is(err, ErrNoAgent) {
		t.Fatalf("%v", err)
	}
	for _, want := range []string{path, "hil signer serve --bench FILE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}

func TestSocketOwnedByAnotherUserRefused(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	start(t, newServer(t, d, nil), path)
	wantUID := 0
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		wantUID = 65534
	} else {
		// Without root the socket cannot change hands: pretend to be
		// someone else instead.
		old := geteuid
		geteuid = func() int { return os.Geteuid() + 1 }
		t.Cleanup(func() { geteuid = old })
		wantUID = os.Geteuid()
	}
	_, err := Dial(context.Background(), path)
	var oe *OwnerError
	if !errors.As(err, &oe) || oe.UID != wantUID || !errors.Is(err, ErrSocketOwner) ||
		!strings.Contains(err.Error(), fmt.Sprintf("uid %d", wantUID)) {
		t.Fatalf("%v", err)
	}
}

func TestClientReconnectsAfterRestart(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, d, nil), path)
	c := dial(t, path)
	if _, err := c.Issue(context.Background(), "t", makeCSR(t, nil)); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// No agent: a clear error, not a hang.
	if _, err := c.Issue(context.Background(), "t", makeCSR(t, nil)); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("agent stopped: %v", err)
	}
	start(t, newServer(t, d, nil), path)
	if _, err := c.Issue(context.Background(), "t", makeCSR(t, nil)); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, started: make(chan struct{}, 1), release: make(chan struct{})}
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, fs, st), path)
	c, watch := dial(t, path), dial(t, path)
	errs := make(chan error, 3)
	go func() { _, err := c.Issue(context.Background(), "first", makeCSR(t, nil)); errs <- err }()
	<-fs.started
	for range 2 {
		go func() { _, err := c.Issue(context.Background(), "queued", makeCSR(t, nil)); errs <- err }()
	}
	waitFor(t, watch, "2 queued", func(s *Status) bool { return s.Queue == 2 })

	stopped := make(chan error)
	go func() { stopped <- r.stop() }()
	// The queued ones are answered shutting_down while the key still works.
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("queued request: %v", err)
		}
	}
	fs.release <- struct{}{}
	if err := <-errs; err != nil {
		t.Fatalf("the signature in progress: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatal("socket not removed")
	}
	if st.used(t) != 1 || st.audit.Len() != 1 {
		t.Fatalf("budget %d records %d", st.used(t), st.audit.Len())
	}
}

func TestRefusesIncompletePipeline(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	if err := (&Server{}).Serve(context.Background(), path); err == nil || !strings.Contains(err.Error(), "no issuance Pipeline") {
		t.Fatalf("no pipeline: %v", err)
	}
	srv := newServer(t, d, nil)
	srv.Pipeline.Ledger = nil
	if err := srv.Serve(context.Background(), path); err == nil || !strings.Contains(err.Error(), "no Ledger") {
		t.Fatalf("no ledger: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatal("a refused agent created its socket")
	}
}

func TestBusy(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, started: make(chan struct{}, 3), release: make(chan struct{})}
	path := filepath.Join(shortDir(t), "agent.sock")
	srv := newServer(t, fs, nil)
	srv.MaxQueuePerClient, srv.MaxClients = 1, 2
	start(t, srv, path)
	a := dial(t, path)
	errs := make(chan error, 2)
	go func() { _, err := a.Issue(context.Background(), "1", makeCSR(t, nil)); errs <- err }()
	<-fs.started
	go func() { _, err := a.Issue(context.Background(), "2", makeCSR(t, nil)); errs <- err }()
	waitFor(t, a, "one queued", func(s *Status) bool { return s.Queue == 1 })
	// A's queue is full.
	if _, err := a.Issue(context.Background(), "3", makeCSR(t, nil)); !errors.Is(err, ErrBusy) {
		t.Fatalf("full queue: %v", err)
	}
	release := sync.OnceFunc(func() { close(fs.release) }) // every signature, held or to come
	defer release()
	// A second connection is allowed; a third takes the place of the
	// idle one; when every connection is busy (waiting for the DAK), a
	// new one is refused.
	b := dial(t, path)
	if _, err := b.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := dial(t, path)
	if err := untilNotBusy(func() error { _, err := c.Status(context.Background()); return err }); err != nil {
		t.Fatalf("a client in place of an idle one: %v", err)
	}
	r := dial(t, path) // in place of b, now idle the longest
	errs3 := make(chan error, 1)
	go func() {
		errs3 <- untilNotBusy(func() error { _, err := r.Issue(context.Background(), "4", makeCSR(t, nil)); return err })
	}()
	waitFor(t, a, "two queued", func(s *Status) bool { return s.Queue == 2 })
	if _, err := dial(t, path).Status(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("too many busy clients: %v", err)
	}
	release()
	if err := <-errs3; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// untilNotBusy runs op until the agent does not answer it busy. A client has its answer when the
// agent has written it, a moment before the agent counts that connection idle again: a client
// that connects in that moment finds every connection busy and is refused.
func untilNotBusy(op func() error) error {
	for range 1000 {
		if err := op(); !errors.Is(err, ErrBusy) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("refused busy 1000 times: the idle connection was never replaced")
}

func TestClientResendsWhenTheAnswerIsLost(t *testing.T) {
	// A stand-in agent that drops the first connection after reading the
	// request (as an agent that crashed would), then answers.
	path := filepath.Join(shortDir(t), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for i := 0; ; i++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(nc)
			line, err := br.ReadBytes('\n')
			if err != nil || i == 0 {
				nc.Close()
				continue
			}
			var req request
			json.Unmarshal(line, &req)
			out, _ := json.Marshal(response{ID: req.ID, OK: true, Status: &Status{PID: 4242}})
			nc.Write(append(out, '\n'))
			nc.Close()
		}
	}()
	c := dial(t, path)
	st, err := c.Status(context.Background())
	if err != nil || st.PID != 4242 {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestLedgerBehindTheAuditLogRefused(t *testing.T) {
	d, _ := dak(t)
	stateDir := shortDir(t)
	st := openState(t, stateDir, 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	r := start(t, newServer(t, d, st), path)
	c := dial(t, path)
	for range 2 {
		if _, err := c.Issue(context.Background(), "t", makeCSR(t, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st.close()
	// Someone "resets" the DAK by deleting the ledger.
	for _, f := range []string{"ledger.db", "ledger.db-wal", "ledger.db-shm"} {
		if err := os.Remove(filepath.Join(stateDir, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	st2 := openState(t, stateDir, 10)
	err := newServer(t, d, st2).Serve(context.Background(), path)
	if !errors.Is(err, issue.ErrLedgerBehind) || !strings.Contains(err.Error(), "records 2 certificates") ||
		!strings.Contains(err.Error(), "hil ledger import") {
		t.Fatalf("%v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatal("a refused agent created its socket")
	}
}

func TestIssuerLookupStoredVerified(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, started: make(chan struct{}, 1), release: make(chan struct{})}
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	srv := newServer(t, fs, st)
	start(t, srv, path)
	var iss device.Issuer = dial(t, path).Issuer(srv.Pipeline.TrustAnchors)
	if len(iss.Roots()) != 1 || !iss.Roots()[0].Equal(srv.Pipeline.TrustAnchors[0]) {
		t.Fatalf("roots %v", iss.Roots())
	}
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := &key.PublicKey

	// Nothing known yet.
	if k, err := iss.Lookup(ctx, pub); k != nil || err != nil {
		t.Fatalf("unknown key: %+v %v", k, err)
	}
	// While the DAK signs, the key is reserved.
	issued := make(chan *pki.Issued, 1)
	go func() {
		is, err := iss.Issue(ctx, device.IssueRequest{Target: "slot4", DeviceID: "SN-0004", CSRPEM: csrFor(t, key, nil)})
		if err != nil {
			t.Error(err)
		}
		issued <- is
	}()
	<-fs.started
	if k, err := iss.Lookup(ctx, pub); err != nil || k == nil || k.State != "reserved" || k.Issued != nil {
		t.Fatalf("while signing: %+v %v", k, err)
	}
	fs.release <- struct{}{}
	is := <-issued
	if is == nil {
		t.FailNow()
	}
	if err := device.Verify(is.Chain, is, iss.Roots(), time.Now()); err != nil {
		t.Fatal(err)
	}

	for _, step := range []struct {
		state   string
		advance func(context.Context, *x509.Certificate) error
	}{{"issued", nil}, {"stored", iss.Stored}, {"verified", iss.Verified}} {
		if step.advance != nil {
			if err := step.advance(ctx, is.Certificate); err != nil {
				t.Fatalf("%s: %v", step.state, err)
			}
		}
		k, err := iss.Lookup(ctx, pub)
		if err != nil || k == nil || k.State != step.state || k.Issued == nil || !bytes.Equal(k.Issued.ChainPEM, is.ChainPEM) {
			t.Fatalf("lookup when %s: %+v %v", step.state, k, err)
		}
		// What Lookup returns is what a driver verifies the device's chain against.
		if err := device.Verify(is.Chain, k.Issued, iss.Roots(), time.Now()); err != nil {
			t.Fatalf("verify against the lookup when %s: %v", step.state, err)
		}
	}
	// Recording again is harmless.
	if err := iss.Verified(ctx, is.Certificate); err != nil {
		t.Fatal(err)
	}
	rec := st.live(t, pub)
	if rec.State != ledger.Verified || rec.DeviceID != "SN-0004" || rec.Target != "slot4" || rec.StoredAt.IsZero() || rec.VerifiedAt.IsZero() {
		t.Fatalf("ledger record %+v", rec)
	}
	// A certificate the ledger does not hold.
	if err := iss.Stored(ctx, d.Chain()[0]); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("stored for an unknown certificate: %v", err)
	}
	if fs.calls.Load() != 1 {
		t.Fatalf("signed %d", fs.calls.Load())
	}
}

func TestReprovisionReplaces(t *testing.T) {
	d, _ := dak(t)
	st := openState(t, shortDir(t), 10)
	path := filepath.Join(shortDir(t), "agent.sock")
	srv := newServer(t, d, st)
	start(t, srv, path)
	iss := dial(t, path).Issuer(srv.Pipeline.TrustAnchors)
	ctx := context.Background()
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	old, err := iss.Issue(ctx, device.IssueRequest{Target: "slot1", DeviceID: "SN-1", CSRPEM: csrFor(t, oldKey, nil)})
	if err != nil {
		t.Fatal(err)
	}
	// The device made a new key: without saying what it replaces, the
	// ledger refuses a second live identity for the device.
	_, err = iss.Issue(ctx, device.IssueRequest{Target: "slot1", DeviceID: "SN-1", CSRPEM: csrFor(t, newKey, nil)})
	var ae *Error
	if !errors.Is(err, ledger.ErrLiveRecord) || !errors.Is(err, ErrLedgerFailed) || !errors.Is(err, issue.ErrLedger) ||
		!errors.As(err, &ae) || ae.Code != CodeLedgerFailed || ae.Reason != "live_record" {
		t.Fatalf("second identity: %v", err)
	}
	res, err := iss.IssueResult(ctx, device.IssueRequest{Target: "slot1", DeviceID: "SN-1", CSRPEM: csrFor(t, newKey, nil), Replaces: old.Certificate})
	if err != nil || res.Reused {
		t.Fatalf("reprovision: %+v %v", res, err)
	}
	if k, err := iss.Lookup(ctx, &oldKey.PublicKey); k != nil || err != nil {
		t.Fatalf("the replaced key: %+v %v", k, err)
	}
	if k, err := iss.Lookup(ctx, &newKey.PublicKey); err != nil || k == nil || k.State != "issued" || !bytes.Equal(k.Issued.ChainPEM, res.ChainPEM) {
		t.Fatalf("the new key: %+v %v", k, err)
	}
	recs, err := st.ledger.List(ctx, ledger.Filter{DeviceID: "SN-1"})
	if err != nil || len(recs) != 2 || recs[0].State != ledger.Replaced || recs[0].ReplacedBy != recs[1].ID {
		t.Fatalf("records %+v %v", recs, err)
	}
}

func TestCSRCheckedOnce(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d}
	path := filepath.Join(shortDir(t), "agent.sock")
	srv := newServer(t, fs, nil)
	var checks atomic.Int64
	srv.check = func(req device.IssueRequest) (*issue.Checked, error) {
		checks.Add(1)
		return srv.Pipeline.Check(req)
	}
	start(t, srv, path)
	c := dial(t, path)
	csrs := makeCSRs(t, 3)
	for _, csr := range append(csrs, csrs[0]) {
		if _, err := c.Issue(context.Background(), "t", csr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Issue(context.Background(), "t", makeCSR(t, map[string]string{"DeviceTypeId": "WRONG"})); !errors.Is(err, pki.ErrDeviceType) {
		t.Fatal(err)
	}
	// One check per request, on the connection; the worker issues what was checked.
	if checks.Load() != 5 || fs.calls.Load() != 3 {
		t.Fatalf("%d checks, %d signatures for 5 requests (3 new keys)", checks.Load(), fs.calls.Load())
	}
}

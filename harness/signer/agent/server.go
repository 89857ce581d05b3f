package agent

import (
	"context"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/budget"
)

// Defaults for the Server's limits.
const (
	DefaultMaxQueue          = 1024
	DefaultMaxQueuePerClient = 256
	DefaultMaxClients        = 256
	DefaultWriteTimeout      = 10 * time.Second
)

// Server is the signing agent: the one process that uses the DAK. Set the
// fields, then call Serve.
type Server struct {
	// Signer is the DAK. Only the agent's single worker goroutine calls
	// its Sign method, one signature at a time.
	Signer signer.Signer
	// Profile is the product profile CSRs are checked against and
	// certificates are issued with.
	Profile *pki.Profile
	// Validity of issued certificates; default pki.DefaultValidity.
	Validity time.Duration

	// Budget counts every signature; a reservation is made right before
	// each one. It must count Signer's DAK. nil: signatures are not
	// counted (development only; Serve logs a warning).
	Budget *budget.Budget
	// Audit records every certificate before its answer is sent, and
	// answers retries after a restart. nil: retries are recognised during
	// this run only (Serve logs a warning).
	Audit *audit.Log

	// Logf receives one line per event (start, issue, refusal, stop).
	// Lines carry no key material, PIN or CSR content. nil: discarded.
	Logf func(format string, args ...any)
	// OnReady, if set, is called once the socket accepts connections.
	OnReady func(socketPath string)

	// Limits; zero values take the defaults above. A request beyond them
	// is answered busy.
	MaxQueue          int
	MaxQueuePerClient int
	MaxClients        int
	// WriteTimeout bounds writing one batch of answers to a client that
	// does not read.
	WriteTimeout time.Duration

	// Seams for tests.
	Now  func() time.Time // default time.Now
	Rand io.Reader        // serial numbers and signatures; default crypto/rand
}

// runtime is one Serve call's state.
type runtime struct {
	cfg          *Server
	logf         func(string, ...any)
	issuer       *pki.Issuer
	gate         *gatedSigner
	dakSHA256    string
	dakSubject   string
	started      time.Time
	writeTimeout time.Duration
	maxClients   int
	q            *scheduler

	signing                  atomic.Bool
	issued, reused, rejected atomic.Int64

	mu        sync.Mutex
	memo      map[string]*audit.Record // issued this run; only without an audit log
	unaudited map[string]*audit.Record // issued, audit append failed
	conns     map[*conn]struct{}
	closing   bool
	wg        sync.WaitGroup // connection goroutines
}

// Serve listens on socketPath and signs until ctx is cancelled; then it
// finishes the signature in progress, answers queued requests with
// shutting_down, removes the socket and returns nil. It returns an error if
// it cannot start (a bad configuration, an unsafe socket directory, another
// agent on the path).
func (s *Server) Serve(ctx context.Context, socketPath string) error {
	rt, err := s.newRuntime()
	if err != nil {
		return err
	}
	l, err := listen(socketPath, rt.logf)
	if err != nil {
		return err
	}
	return rt.serve(ctx, l)
}

func (s *Server) newRuntime() (*runtime, error) {
	if s.Signer == nil {
		return nil, errors.New("signing agent: no Signer (DAK)")
	}
	if s.Profile == nil {
		return nil, errors.New("signing agent: no product Profile")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if err := signer.CheckChain(s.Signer, now()); err != nil {
		return nil, fmt.Errorf("signing agent: DAK %s: %w", s.Signer.Description(), err)
	}
	chain := s.Signer.Chain()
	dakSHA := audit.SHA256Hex(chain[0].Raw)
	if s.Budget != nil && s.Budget.DAKSHA256() != dakSHA {
		return nil, fmt.Errorf("signing agent: the signature budget %s counts DAK certificate %s, not this DAK (%s, certificate SHA-256 %s): %w",
			s.Budget.Path(), s.Budget.DAKSHA256(), s.Signer.Description(), dakSHA, budget.ErrOtherDAK)
	}
	if s.Budget != nil && s.Audit != nil {
		// A deleted or replaced counter starts again at 0; the audit log
		// remembers what this DAK signed.
		if used, recorded := s.Budget.Used(), s.Audit.CountDAK(dakSHA); used < int64(recorded) {
			return nil, fmt.Errorf("signing agent: the signature budget %s counts %d signatures but the audit log %s records %d certificates issued by this DAK: "+
				"the counter was reset or replaced; refusing to sign until it is restored: %w",
				s.Budget.Path(), used, s.Audit.Path(), recorded, budget.ErrCorrupt)
		}
	}
	logf := s.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	gate := &gatedSigner{inner: s.Signer, budget: s.Budget}
	rt := &runtime{
		cfg:  s,
		logf: logf,
		issuer: &pki.Issuer{
			Profile:       s.Profile,
			Signer:        gate,
			CA:            chain[0],
			Intermediates: chain[1:],
			Validity:      s.Validity,
			Now:           s.Now,
			Rand:          s.Rand,
		},
		gate:         gate,
		dakSHA256:    dakSHA,
		dakSubject:   chain[0].Subject.String(),
		started:      time.Now(),
		writeTimeout: orDefault(s.WriteTimeout, DefaultWriteTimeout),
		maxClients:   orDefault(s.MaxClients, DefaultMaxClients),
		q:            newScheduler(orDefault(s.MaxQueue, DefaultMaxQueue), orDefault(s.MaxQueuePerClient, DefaultMaxQueuePerClient)),
		memo:         map[string]*audit.Record{},
		unaudited:    map[string]*audit.Record{},
		conns:        map[*conn]struct{}{},
	}
	return rt, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (rt *runtime) serve(ctx context.Context, l *listening) error {
	s := rt.cfg
	budgetText := "NOT COUNTED (no budget configured)"
	if b := rt.budgetInfo(); b != nil {
		budgetText = fmt.Sprintf("%d/%d used (%s)", b.Used, b.Max, s.Budget.Path())
		if b.Max <= 0 {
			budgetText = fmt.Sprintf("%d used, unlimited (%s)", b.Used, s.Budget.Path())
		}
	}
	auditText := "NONE (retries recognised during this run only)"
	if s.Audit != nil {
		auditText = fmt.Sprintf("%s (%d records)", s.Audit.Path(), s.Audit.Len())
		for _, w := range s.Audit.Warnings() {
			rt.logf("signing agent: warning: %s", w)
		}
	}
	rt.logf("signing agent: serving DAK %s on %s (pid %d); budget %s; audit log %s",
		s.Signer.Description(), l.path, os.Getpid(), budgetText, auditText)

	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		rt.work(ctx)
	}()
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		rt.accept(l.ln)
	}()
	if s.OnReady != nil {
		s.OnReady(l.path)
	}

	<-ctx.Done()
	rt.mu.Lock()
	rt.closing = true
	rt.mu.Unlock()
	l.close()
	<-acceptDone
	queued := rt.q.close()
	for _, j := range queued {
		j.c.sendJob(errResponse(j.id, CodeShuttingDown, "the signing agent is shutting down; nothing was signed for this request: retry when an agent runs again"))
	}
	<-workerDone // the signature in progress, if any, is answered
	rt.mu.Lock()
	for c := range rt.conns {
		c.nc.SetReadDeadline(time.Now())
	}
	rt.mu.Unlock()
	rt.wg.Wait()
	rt.logf("signing agent: stopped; issued %d, retries answered %d, refused %d, queued requests answered shutting_down %d",
		rt.issued.Load(), rt.reused.Load(), rt.rejected.Load(), len(queued))
	return nil
}

func (rt *runtime) accept(ln *net.UnixListener) {
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait and go on serving the clients
			// already connected.
			rt.logf("signing agent: accept: %v", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		rt.startConn(nc)
	}
}

// work is the single goroutine that uses the DAK.
func (rt *runtime) work(ctx context.Context) {
	for {
		if ctx.Err() != nil {
			return
		}
		j := rt.q.pop()
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-rt.q.wake:
			}
			continue
		}
		rt.process(j)
	}
}

// process answers one queued issue request.
func (rt *runtime) process(j *job) {
	if j.c.isDead() {
		return
	}
	rt.signing.Store(true)
	defer rt.signing.Store(false)

	auditErr := rt.flushUnaudited()
	if rec := rt.lookup(j.csrHash); rec != nil {
		rt.answerReused(j.c, j.id, j.target, rec, true)
		return
	}
	if auditErr != nil {
		rt.mu.Lock()
		n := len(rt.unaudited)
		rt.mu.Unlock()
		j.c.sendJob(errResponse(j.id, CodeAuditFailed, fmt.Sprintf(
			"the audit log %s cannot be written (%v): %d issued certificates are not recorded yet, so the agent signs nothing more until they are; "+
				"fix the disk (space, permissions) and retry", rt.cfg.Audit.Path(), auditErr, n)))
		return
	}

	start := time.Now()
	rt.gate.reset()
	is, err := rt.issuer.Issue(j.csrPEM)
	if err != nil {
		we := errorFor(err)
		if we.Code == CodeCSRRejected {
			rt.rejected.Add(1)
		}
		rt.logf("signing agent: refused %q (%s, client %s): %s", j.target, we.Code, peerText(j.peer), we.Message)
		j.c.sendJob(response{ID: j.id, Error: we})
		return
	}
	res, reserved := rt.gate.reservation()
	rec := audit.FromIssued(is)
	if rec.CSRSHA256 != j.csrHash {
		// Cannot happen: both hash the DER of the first PEM block.
		rt.logf("signing agent: internal: CSR hash %s, issued for %s", j.csrHash, rec.CSRSHA256)
		rec.CSRSHA256 = j.csrHash
	}
	rec.Time = rt.now().UTC()
	rec.Target = j.target
	rec.Client = j.peer
	rec.RequestID = j.id
	if reserved {
		rec.BudgetUsed, rec.BudgetMax = res.Used, res.Max
	}
	if rt.cfg.Audit != nil {
		if err := rt.cfg.Audit.Append(rec); err != nil {
			rt.mu.Lock()
			rt.unaudited[j.csrHash] = &rec
			rt.mu.Unlock()
			rt.logf("signing agent: ERROR: issued serial %s for %q but cannot record it: %v; signing stops until the audit log can be written",
				rec.Serial, j.target, err)
			j.c.sendJob(errResponse(j.id, CodeAuditFailed, fmt.Sprintf(
				"the certificate was issued but the audit log %s cannot be written (%v); it is delivered only once recorded: fix the disk and retry the same CSR",
				rt.cfg.Audit.Path(), err)))
			return
		}
	} else {
		rt.mu.Lock()
		rt.memo[j.csrHash] = &rec
		rt.mu.Unlock()
	}
	rt.issued.Add(1)
	resp := response{ID: j.id, OK: true, Chain: rec.ChainPEM, Serial: rec.Serial, SHA256: rec.CertSHA256, CSRSHA256: rec.CSRSHA256}
	if reserved {
		resp.Budget = &BudgetInfo{Used: res.Used, Max: res.Max, Remaining: res.Remaining}
		resp.Warning = res.Message
	}
	budgetText := ""
	if reserved {
		budgetText = fmt.Sprintf(", budget %d/%d", res.Used, res.Max)
	}
	rt.logf("signing agent: issued serial %s (%s) to %q (client %s) in %.1f ms%s",
		rec.Serial, rec.Subject, j.target, peerText(j.peer), float64(time.Since(start).Microseconds())/1000, budgetText)
	if res.Warning {
		rt.logf("signing agent: WARNING: %s", res.Message)
	}
	j.c.sendJob(resp)
}

// flushUnaudited retries the audit records that could not be written.
func (rt *runtime) flushUnaudited() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var last error
	for h, rec := range rt.unaudited {
		if err := rt.cfg.Audit.Append(*rec); err != nil {
			last = err
			continue
		}
		delete(rt.unaudited, h)
		rt.logf("signing agent: recorded serial %s in the audit log after all", rec.Serial)
	}
	return last
}

// lookup finds an earlier issuance for the CSR: this run's, or the audit
// log's for this DAK.
func (rt *runtime) lookup(csrHash string) *audit.Record {
	rt.mu.Lock()
	rec := rt.memo[csrHash]
	rt.mu.Unlock()
	if rec != nil || rt.cfg.Audit == nil {
		return rec
	}
	r, ok := rt.cfg.Audit.Find(csrHash)
	if !ok {
		return nil
	}
	if r.DAKSHA256 != rt.dakSHA256 {
		rt.logf("signing agent: CSR %s was issued before by another DAK (certificate SHA-256 %s); issuing with this one", csrHash, r.DAKSHA256)
		return nil
	}
	return r
}

func (rt *runtime) answerReused(c *conn, id, target string, rec *audit.Record, queued bool) {
	rt.reused.Add(1)
	resp := response{ID: id, OK: true, Chain: rec.ChainPEM, Serial: rec.Serial, SHA256: rec.CertSHA256,
		CSRSHA256: rec.CSRSHA256, Reused: true, Budget: rt.budgetInfo()}
	rt.logf("signing agent: %q asked again for CSR %s: answered with the chain issued %s (serial %s), nothing signed",
		target, rec.CSRSHA256[:16], rec.Time.Format(time.RFC3339), rec.Serial)
	if queued {
		c.sendJob(resp)
	} else {
		c.send(resp)
	}
}

// issue handles an issue request on a connection's reader goroutine: the
// checks that need no DAK happen here, so bad requests and bad CSRs never
// wait for the key and never spend budget.
func (rt *runtime) issue(c *conn, req *request) {
	bad := func(msg string) { c.send(errResponse(req.ID, CodeBadRequest, msg)) }
	switch {
	case req.ID == "":
		bad("issue request has no id")
		return
	case req.Target == "":
		bad("issue request has no target (name the device or station slot the CSR comes from)")
		return
	case len(req.Target) > maxTarget:
		bad(fmt.Sprintf("target is %d bytes, at most %d", len(req.Target), maxTarget))
		return
	case req.CSR == "":
		bad("issue request has no csr")
		return
	}
	csrPEM := []byte(req.CSR)
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		bad("csr is not PEM: send the -----BEGIN CERTIFICATE REQUEST----- block the device printed")
		return
	}
	hash := audit.SHA256Hex(block.Bytes)
	if rec := rt.lookup(hash); rec != nil {
		rt.answerReused(c, req.ID, req.Target, rec, false)
		return
	}
	if _, err := rt.cfg.Profile.CheckCSR(csrPEM); err != nil {
		rt.rejected.Add(1)
		we := errorFor(err)
		rt.logf("signing agent: refused CSR from %q (client %s): %s", req.Target, peerText(c.peer), we.Message)
		c.send(response{ID: req.ID, Error: we})
		return
	}
	if b := rt.cfg.Budget; b != nil && b.Max() > 0 {
		if used := b.Used(); used >= b.Max() {
			err := &budget.ExhaustedError{Path: b.Path(), Used: used, Max: b.Max(), Subject: rt.dakSubject}
			c.send(errResponse(req.ID, CodeBudgetExhausted, err.Error()))
			return
		}
	}
	j := &job{c: c, id: req.ID, target: req.Target, csrPEM: csrPEM, csrHash: hash, peer: c.peer, received: time.Now()}
	c.addInflight()
	if err := rt.q.push(j); err != nil {
		code, msg := CodeBusy, fmt.Sprintf("the signing agent's queue is full (%d waiting): retry later", rt.q.len())
		if errors.Is(err, ErrShuttingDown) {
			code, msg = CodeShuttingDown, "the signing agent is shutting down; nothing was signed for this request: retry when an agent runs again"
		}
		c.sendJob(errResponse(req.ID, code, msg))
	}
}

func (rt *runtime) status() *Status {
	rt.mu.Lock()
	clients, unaudited := len(rt.conns), len(rt.unaudited)
	rt.mu.Unlock()
	st := &Status{
		DAK:           rt.cfg.Signer.Description(),
		DAKSubject:    rt.dakSubject,
		DAKSHA256:     rt.dakSHA256,
		Budget:        rt.budgetInfo(),
		Queue:         rt.q.len(),
		Signing:       rt.signing.Load(),
		Issued:        rt.issued.Load(),
		Reused:        rt.reused.Load(),
		Rejected:      rt.rejected.Load(),
		Unaudited:     unaudited,
		Clients:       clients,
		PID:           os.Getpid(),
		Started:       rt.started.UTC(),
		UptimeSeconds: time.Since(rt.started).Seconds(),
	}
	if rt.cfg.Audit != nil {
		st.AuditLog = rt.cfg.Audit.Path()
	}
	return st
}

func (rt *runtime) budgetInfo() *BudgetInfo {
	b := rt.cfg.Budget
	if b == nil {
		return nil
	}
	used := b.Used()
	return &BudgetInfo{Used: used, Max: b.Max(), Remaining: b.Remaining()}
}

func (rt *runtime) now() time.Time {
	if rt.cfg.Now != nil {
		return rt.cfg.Now()
	}
	return time.Now()
}

func errResponse(id, code, msg string) response {
	return response{ID: id, Error: &wireError{Code: code, Message: msg}}
}

func peerText(p *audit.Peer) string {
	if p == nil {
		return "unknown"
	}
	return fmt.Sprintf("pid %d uid %d", p.PID, p.UID)
}

// gatedSigner reserves a signature in the budget right before each one.
// Only the worker uses it.
type gatedSigner struct {
	inner    crypto.Signer
	budget   *budget.Budget
	res      budget.Reservation
	reserved bool
}

func (g *gatedSigner) Public() crypto.PublicKey { return g.inner.Public() }

func (g *gatedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if g.budget != nil {
		res, err := g.budget.Reserve()
		if err != nil {
			return nil, err
		}
		g.res, g.reserved = res, true
	}
	return g.inner.Sign(rand, digest, opts)
}

func (g *gatedSigner) reset() { g.res, g.reserved = budget.Reservation{}, false }

func (g *gatedSigner) reservation() (budget.Reservation, bool) { return g.res, g.reserved }

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/issue"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/audit"
)

// Defaults for the Server's limits.
const (
	DefaultMaxQueue          = 1024
	DefaultMaxQueuePerClient = 256
	DefaultMaxClients        = 256
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultMaxPending        = 1 << 20
	DefaultMaxPendingTotal   = 32 << 20
)

// Server is the signing agent: the one process that uses the DAK. Set the
// fields, then call Serve.
type Server struct {
	// Pipeline issues every certificate: CSR check, reservation in the
	// ledger with the DAK's budget, signature, audit log, ledger record.
	// Required, with its Certs (profile, DAK signer and certificate) and
	// Ledger. Connection goroutines check CSRs with Pipeline.Check; the
	// workers issue with Pipeline.IssueChecked. Serve neither opens nor
	// closes the pipeline.
	Pipeline *issue.Pipeline
	// Description names the DAK in logs and status; default: the signer's
	// Description (a signer.Signer), else the DAK certificate's subject.
	Description string

	// Logf receives one line per event (start, issue, refusal, stop).
	// Lines carry no key material, PIN or CSR content. nil: discarded.
	Logf func(format string, args ...any)
	// OnReady, if set, is called once the socket accepts connections.
	OnReady func(socketPath string)

	// Limits; zero values take the defaults above. An issue request
	// beyond the queues is answered busy. A connection beyond MaxClients
	// takes the place of the connection idle the longest (closed), or is
	// answered busy when every connection is busy.
	MaxQueue          int
	MaxQueuePerClient int
	MaxClients        int
	// WriteTimeout bounds writing one batch of answers to a client that
	// does not read; the client is then dropped.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection that has sent nothing for this long
	// while it has no request in progress and no answer unwritten (the
	// Client dials again when it next needs the agent).
	IdleTimeout time.Duration
	// ReadTimeout closes a connection that started a request line and has
	// not finished it this long after its first byte arrived.
	ReadTimeout time.Duration
	// MaxPending bounds the answers written to one connection but not yet
	// read by its client (bytes); a client past it is dropped (logged).
	// From MaxPending/16 unread the agent stops reading the client's
	// requests until it reads; when writing to it has not progressed
	// for WriteTimeout, it is dropped (logged).
	// MaxPendingTotal bounds them across all connections: past it, a
	// client with more than MaxPending/16 unread is dropped as it is
	// answered again. So the agent's memory stays bounded whatever its
	// clients send or fail to read.
	MaxPending      int
	MaxPendingTotal int
	// Workers is how many issue requests are in progress at once. Default:
	// 1 for a DAK outside the process (a YubiKey signs one at a time, and a
	// request popped early only hides the queue's depth); for an in-process
	// DAK 2 per CPU, at least 8, so that concurrent requests sign on every
	// core and share the ledger's and the audit log's fsyncs (group commit).
	Workers int

	// Now is the time the DAK's chain must be valid at when Serve starts;
	// default time.Now.
	Now func() time.Time

	// check is Pipeline.Check unless a test counts the calls.
	check func(device.IssueRequest) (*issue.Checked, error)
}

// runtime is one Serve call's state.
type runtime struct {
	cfg          *Server
	p            *issue.Pipeline
	ctx          context.Context // for the ledger: not cancelled when Serve's ctx is
	logf         func(string, ...any)
	check        func(device.IssueRequest) (*issue.Checked, error)
	description  string
	dakSHA256    string
	dakSubject   string
	started      time.Time
	writeTimeout time.Duration
	idleTimeout  time.Duration
	readTimeout  time.Duration
	maxPending   int
	maxTotal     int
	maxClients   int
	q            *scheduler

	stopping atomic.Bool  // Serve's ctx is done: readers stop waiting
	pending  atomic.Int64 // answers not yet written, all connections (bytes)

	budgetMu     sync.Mutex // the budget status answers reuse (statusBudget)
	budgetCached *BudgetInfo
	budgetIssued int64
	budgetAt     time.Time
	dropped      atomic.Int64 // clients dropped for not reading

	workers                  int
	signing                  atomic.Int64 // requests in progress
	issued, reused, rejected atomic.Int64

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup // connection goroutines
}

// Serve listens on socketPath and signs until ctx is cancelled; then it
// finishes the signature in progress, answers queued requests with
// shutting_down, removes the socket and returns nil. It returns an error if
// it cannot start (a bad configuration, a DAK outside its validity, a
// ledger that counts fewer signatures than the audit log holds, an unsafe
// socket directory, another agent on the path).
func (s *Server) Serve(ctx context.Context, socketPath string) error {
	rt, err := s.newRuntime(ctx)
	if err != nil {
		return err
	}
	l, err := listen(socketPath, rt.logf)
	if err != nil {
		return err
	}
	return rt.serve(ctx, l)
}

func (s *Server) newRuntime(ctx context.Context) (*runtime, error) {
	p := s.Pipeline
	switch {
	case p == nil:
		return nil, errors.New("signing agent: no issuance Pipeline")
	case p.Certs == nil || p.Certs.Signer == nil || p.Certs.CA == nil:
		return nil, errors.New("signing agent: the Pipeline has no DAK (Certs.Signer, Certs.CA)")
	case p.Certs.Profile == nil:
		return nil, errors.New("signing agent: the Pipeline has no product Profile")
	case p.Ledger == nil:
		return nil, errors.New("signing agent: the Pipeline has no Ledger")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	description := s.Description
	if ds, ok := p.Certs.Signer.(signer.Signer); ok {
		if err := signer.CheckChain(ds, now()); err != nil {
			return nil, fmt.Errorf("signing agent: DAK %s: %w", ds.Description(), err)
		}
		if description == "" {
			description = ds.Description()
		}
	}
	if description == "" {
		description = "DAK " + p.Certs.CA.Subject.String()
	}
	// A deleted or rolled-back ledger starts counting again; the audit log
	// remembers what this DAK signed.
	if err := p.CheckBudgetFloor(ctx); err != nil {
		return nil, fmt.Errorf("signing agent: %w", err)
	}
	logf := s.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	check := s.check
	if check == nil {
		check = p.Check
	}
	return &runtime{
		cfg:          s,
		p:            p,
		ctx:          context.WithoutCancel(ctx),
		logf:         logf,
		check:        check,
		description:  description,
		dakSHA256:    p.DAKSHA256(),
		dakSubject:   p.Certs.CA.Subject.String(),
		started:      time.Now(),
		writeTimeout: orDefault(s.WriteTimeout, DefaultWriteTimeout),
		idleTimeout:  orDefault(s.IdleTimeout, DefaultIdleTimeout),
		readTimeout:  orDefault(s.ReadTimeout, DefaultReadTimeout),
		maxPending:   orDefault(s.MaxPending, DefaultMaxPending),
		maxTotal:     orDefault(s.MaxPendingTotal, DefaultMaxPendingTotal),
		maxClients:   orDefault(s.MaxClients, DefaultMaxClients),
		workers:      orDefault(s.Workers, defaultWorkers(p)),
		q:            newScheduler(orDefault(s.MaxQueue, DefaultMaxQueue), orDefault(s.MaxQueuePerClient, DefaultMaxQueuePerClient)),
		conns:        map[*conn]struct{}{},
	}, nil
}

// defaultWorkers is Server.Workers' default for the pipeline's DAK.
func defaultWorkers(p *issue.Pipeline) int {
	if !pki.SignsInProcess(p.Certs.Signer) {
		return 1
	}
	return max(8, 2*goruntime.GOMAXPROCS(0))
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (rt *runtime) serve(ctx context.Context, l *listening) error {
	budgetText := "unreadable"
	if b, err := rt.budgetInfo(); err == nil {
		budgetText = fmt.Sprintf("%d/%d used", b.Used, b.Max)
		if b.Max <= 0 {
			budgetText = fmt.Sprintf("%d used, unlimited", b.Used)
		}
	} else {
		rt.logf("signing agent: warning: %v", err)
	}
	auditText := "NONE (development only: no evidence of what was signed)"
	if a := rt.p.Audit; a != nil {
		auditText = fmt.Sprintf("%s (%d records)", a.Path(), a.Len())
		for _, w := range a.Warnings() {
			rt.logf("signing agent: warning: %s", w)
		}
	}
	rt.logf("signing agent: serving DAK %s on %s (pid %d); ledger %s, budget %s; audit log %s",
		rt.description, l.path, os.Getpid(), rt.p.Ledger.Describe(), budgetText, auditText)

	workerDone := make(chan struct{})
	var workers sync.WaitGroup
	for range rt.workers {
		workers.Go(func() { rt.work(ctx) })
	}
	go func() {
		workers.Wait()
		close(workerDone)
	}()
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		rt.accept(l.ln)
	}()
	if rt.cfg.OnReady != nil {
		rt.cfg.OnReady(l.path)
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
	<-workerDone // the signatures in progress, if any, are answered
	rt.stopping.Store(true)
	rt.mu.Lock()
	for c := range rt.conns {
		c.nc.SetReadDeadline(time.Now())
	}
	rt.mu.Unlock()
	rt.wg.Wait()
	rt.logf("signing agent: stopped; issued %d, answered from the ledger %d, refused %d, queued requests answered shutting_down %d",
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

// work is one worker: it issues queued requests one after the other.
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

// process answers one queued issue request: the ledger's chain for the
// CSR's key, or a new one.
func (rt *runtime) process(j *job) {
	if j.c.isDead() {
		return
	}
	rt.signing.Add(1)
	defer rt.signing.Add(-1)

	start := time.Now()
	is, reused, err := rt.p.IssueChecked(rt.ctx, j.checked)
	if err != nil {
		we := errorFor(err)
		if we.Code == CodeCSRRejected {
			rt.rejected.Add(1)
		}
		if we.Code == CodeAuditFailed {
			rt.logf("signing agent: ERROR: signed for %q (client %s) but cannot record it: %s", j.target, peerText(j.peer), we.Message)
		} else {
			rt.logf("signing agent: refused %q (%s, client %s): %s", j.target, we.Code, peerText(j.peer), we.Message)
		}
		j.c.sendJob(response{ID: j.id, Error: we})
		return
	}
	resp := issuedResponse(j.id, j.checked, is, reused)
	b, berr := rt.budgetInfo()
	if berr == nil {
		resp.Budget, resp.Warning = b, budgetWarning(b)
	}
	if reused {
		rt.reused.Add(1)
		rt.logf("signing agent: %q (client %s) asked again for a device key the ledger holds a chain for: answered with serial %s, nothing signed",
			j.target, peerText(j.peer), resp.Serial)
	} else {
		rt.issued.Add(1)
		budgetText := ""
		if b != nil {
			budgetText = fmt.Sprintf(", budget %d/%d", b.Used, b.Max)
		}
		rt.logf("signing agent: issued serial %s (%s) to %q (client %s) in %.1f ms%s",
			resp.Serial, is.Certificate.Subject, j.target, peerText(j.peer), float64(time.Since(start).Microseconds())/1000, budgetText)
	}
	if resp.Warning != "" {
		rt.logf("signing agent: WARNING: %s", resp.Warning)
	}
	j.c.sendJob(resp)
}

func (rt *runtime) status() *Status {
	rt.mu.Lock()
	clients := len(rt.conns)
	rt.mu.Unlock()
	st := &Status{
		DAK:           rt.description,
		DAKSubject:    rt.dakSubject,
		DAKSHA256:     rt.dakSHA256,
		Queue:         rt.q.len(),
		Signing:       rt.signing.Load() > 0,
		Issued:        rt.issued.Load(),
		Reused:        rt.reused.Load(),
		Rejected:      rt.rejected.Load(),
		Clients:       clients,
		PID:           os.Getpid(),
		Started:       rt.started.UTC(),
		UptimeSeconds: time.Since(rt.started).Seconds(),
		Ledger:        rt.p.Ledger.Describe(),
	}
	if b, err := rt.statusBudget(); err == nil {
		st.Budget = b
	} else {
		st.LedgerError = err.Error()
	}
	if rt.p.Audit != nil {
		st.AuditLog = rt.p.Audit.Path()
	}
	return st
}

// statusBudgetAge is how long a status answer may reuse the budget the
// ledger last gave (while this agent issued nothing): a client asking for
// status in a loop costs no ledger read per answer.
const statusBudgetAge = 250 * time.Millisecond

// statusBudget is budgetInfo for status answers, read from the ledger at
// most once per statusBudgetAge unless the agent issued meanwhile.
func (rt *runtime) statusBudget() (*BudgetInfo, error) {
	issued := rt.issued.Load()
	rt.budgetMu.Lock()
	defer rt.budgetMu.Unlock()
	if rt.budgetCached != nil && rt.budgetIssued == issued && time.Since(rt.budgetAt) < statusBudgetAge {
		b := *rt.budgetCached
		return &b, nil
	}
	b, err := rt.budgetInfo()
	if err != nil {
		rt.budgetCached = nil
		return nil, err
	}
	c := *b
	rt.budgetCached, rt.budgetIssued, rt.budgetAt = &c, issued, time.Now()
	return b, nil
}

// budgetInfo is the DAK's budget as the ledger counts it.
func (rt *runtime) budgetInfo() (*BudgetInfo, error) {
	b, err := rt.p.Ledger.Budget(rt.ctx, rt.dakSHA256)
	if err != nil {
		return nil, fmt.Errorf("reading the DAK budget from the ledger %s: %w", rt.p.Ledger.Describe(), err)
	}
	info := &BudgetInfo{Used: b.Used, Max: rt.p.MaxSignatures, Remaining: -1}
	if info.Max > 0 {
		info.Remaining = max(info.Max-info.Used, 0)
	}
	return info, nil
}

// budgetWarning is the operator's warning from issue.WarnPercent of the
// budget on ("" below).
func budgetWarning(b *BudgetInfo) string {
	if b == nil || b.Max <= 0 || b.Used*100 < b.Max*issue.WarnPercent {
		return ""
	}
	return fmt.Sprintf("DAK signature budget at %d%%: %d/%d signatures used, %d left; "+
		"request a new DAK for this device profile before this one runs out (\"Amazon Sidewalk bulk provisioning workflow\", AWS IoT Wireless Developer Guide)",
		b.Used*100/b.Max, b.Used, b.Max, b.Remaining)
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

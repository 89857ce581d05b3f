package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
)

// defaultWriteTimeout bounds sending one request when ctx has no deadline.
const defaultWriteTimeout = 30 * time.Second

// Client talks to a signing agent over its Unix socket. It is safe for
// concurrent use: goroutines share one connection, their requests are
// pipelined and answers matched by id. The agent queues fairly per
// connection, so goroutines of one Client share one place in the round
// robin; give each process (or station slot that should be served on its
// own) its own Client. If the connection breaks (the agent restarted) the
// next request dials again, and a request whose answer was lost is sent
// once more on the new connection: issuing is idempotent per CSR, so the
// retry returns the same chain and spends no budget.
type Client struct {
	path string

	mu     sync.Mutex // guards cc, closed; held while dialing
	cc     *clientConn
	closed bool

	seq atomic.Uint64
}

// Result is an issuance as the agent reported it.
type Result struct {
	*pki.Issued
	Serial    string // certificate serial, upper-case hex
	SHA256    string // certificate SHA-256, hex
	CSRSHA256 string // SHA-256 of the CSR DER, hex (the audit log's key)
	// Reused is set when the CSR had been issued before (a retry, possibly
	// across an agent restart): the chain is the recorded one and nothing
	// was signed.
	Reused  bool
	Budget  *BudgetInfo // nil when the agent does not count signatures
	Warning string      // the budget is nearly spent: show this to the operator
}

// Dial checks the socket (it exists, is a socket, belongs to this user) and
// connects to the agent.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	c := &Client{path: socketPath}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.cc = cc
	return c, nil
}

// checkSocket refuses a missing path, something that is not a socket, and
// a socket another user owns (whoever owns it runs the agent: we would hand
// them our devices' CSRs and trust their chains).
func checkSocket(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return &NoAgentError{Path: path}
		}
		return fmt.Errorf("signing agent socket %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("signing agent socket %s: %w (is signer.socket right?)", path, ErrNotSocket)
	}
	if uid := int(st.Uid); uid != geteuid() {
		return &OwnerError{Path: path, UID: uid, Want: geteuid()}
	}
	return nil
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	if err := checkSocket(c.path); err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, &NoAgentError{Path: c.path, Stale: true}
		case errors.Is(err, fs.ErrNotExist):
			return nil, &NoAgentError{Path: c.path}
		}
		return nil, fmt.Errorf("connecting to the signing agent at %s: %w", c.path, err)
	}
	uc := nc.(*net.UnixConn)
	// The socket may have been swapped between the check and connect:
	// the peer's credentials are the last word.
	if p := peerOf(uc); p != nil && p.UID != geteuid() && p.UID != 0 {
		nc.Close()
		return nil, &OwnerError{Path: c.path, UID: p.UID, Want: geteuid()}
	}
	cc := &clientConn{nc: uc, pending: map[string]chan *response{}, done: make(chan struct{})}
	go cc.readLoop()
	return cc, nil
}

// conn returns a live connection, dialing if there is none.
func (c *Client) conn(ctx context.Context) (*clientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("signing agent client for %s: %w", c.path, net.ErrClosed)
	}
	if c.cc != nil && !c.cc.broken() {
		return c.cc, nil
	}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.cc = cc
	return cc, nil
}

// do sends req and waits for its answer, retrying once on a new connection
// if the answer was lost with the connection.
func (c *Client) do(ctx context.Context, req *request) (*response, error) {
	for attempt := 0; ; attempt++ {
		cc, err := c.conn(ctx)
		if err != nil {
			return nil, err
		}
		req.ID = strconv.FormatUint(c.seq.Add(1), 10)
		line, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		if len(line) > MaxRequestLine {
			return nil, &Error{Code: CodeBadRequest, ID: req.ID,
				Message: fmt.Sprintf("request is %d bytes, the agent reads at most %d (is the CSR really a CSR?)", len(line), MaxRequestLine)}
		}
		r, err := cc.roundTrip(ctx, req.ID, append(line, '\n'))
		var lost *lostError
		if errors.As(err, &lost) {
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, fmt.Errorf("%w (%s): %v", ErrConnectionLost, c.path, lost.err)
		}
		if err != nil {
			return nil, err
		}
		if r.Error != nil {
			return r, &Error{Code: r.Error.Code, Reason: r.Error.Reason, Message: r.Error.Message, ID: r.ID}
		}
		return r, nil
	}
}

// Issue asks the agent to check csrPEM and issue its chain. target names
// the device or station slot (it goes to the audit log). Errors match
// pki.ErrCSRRejected, budget.ErrExhausted, ErrSignerFailed, ErrBusy,
// ErrShuttingDown, ErrAuditFailed, ErrNoAgent...
func (c *Client) Issue(ctx context.Context, target string, csrPEM []byte) (*pki.Issued, error) {
	r, err := c.IssueResult(ctx, target, csrPEM)
	if err != nil {
		return nil, err
	}
	return r.Issued, nil
}

// IssueResult is Issue with what the agent said besides the chain.
func (c *Client) IssueResult(ctx context.Context, target string, csrPEM []byte) (*Result, error) {
	r, err := c.do(ctx, &request{Op: OpIssue, Target: target, CSR: string(csrPEM)})
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", target, err)
	}
	is, err := issuedFrom(csrPEM, r)
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", target, err)
	}
	return &Result{Issued: is, Serial: r.Serial, SHA256: r.SHA256, CSRSHA256: r.CSRSHA256,
		Reused: r.Reused, Budget: r.Budget, Warning: r.Warning}, nil
}

// issuedFrom parses the answer and checks that it is for this CSR.
func issuedFrom(csrPEM []byte, r *response) (*pki.Issued, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadResponse, fmt.Sprintf(format, args...))
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, bad("issued for a CSR that is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, bad("parsing the CSR sent: %v", err)
	}
	chain, err := pki.ParseChainPEM([]byte(r.Chain))
	if err != nil {
		return nil, bad("chain: %v", err)
	}
	if len(chain) < 2 {
		return nil, bad("chain has %d certificate(s), want the device certificate and the DAK's", len(chain))
	}
	switch {
	case r.CSRSHA256 != audit.SHA256Hex(block.Bytes):
		return nil, bad("answer is for CSR %s, not the one sent", r.CSRSHA256)
	case r.SHA256 != audit.SHA256Hex(chain[0].Raw):
		return nil, bad("certificate SHA-256 %s does not match the chain", r.SHA256)
	case !pki.SamePublicKey(chain[0].PublicKey, csr.PublicKey):
		return nil, bad("the certificate certifies another public key than the CSR's")
	}
	return &pki.Issued{CSR: csr, Certificate: chain[0], Chain: chain, ChainPEM: []byte(r.Chain)}, nil
}

// Status asks the agent how it is doing.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	r, err := c.do(ctx, &request{Op: OpStatus})
	if err != nil {
		return nil, fmt.Errorf("signing agent status: %w", err)
	}
	if r.Status == nil {
		return nil, fmt.Errorf("signing agent status: %w: no status in the answer", ErrBadResponse)
	}
	return r.Status, nil
}

// Close closes the connection; requests waiting for answers fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cc == nil {
		return nil
	}
	err := c.cc.nc.Close()
	c.cc = nil
	return err
}

// lostError: the connection broke before the answer came.
type lostError struct{ err error }

func (e *lostError) Error() string { return "connection lost: " + e.err.Error() }

// clientConn is one connection with its pending requests.
type clientConn struct {
	nc  *net.UnixConn
	wmu sync.Mutex // one request line at a time

	mu      sync.Mutex
	pending map[string]chan *response
	err     error // why the connection ended; set once
	done    chan struct{}
}

func (cc *clientConn) broken() bool {
	select {
	case <-cc.done:
		return true
	default:
		return false
	}
}

func (cc *clientConn) roundTrip(ctx context.Context, id string, line []byte) (*response, error) {
	ch := make(chan *response, 1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return nil, cc.wrap(err)
	}
	cc.pending[id] = ch
	cc.mu.Unlock()
	forget := func() {
		cc.mu.Lock()
		delete(cc.pending, id)
		cc.mu.Unlock()
	}

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultWriteTimeout)
	}
	cc.wmu.Lock()
	cc.nc.SetWriteDeadline(deadline)
	_, err := cc.nc.Write(line)
	cc.wmu.Unlock()
	if err != nil {
		forget()
		// The agent may have closed the connection after saying why
		// (busy, forbidden): let the reader take that in before giving up.
		select {
		case <-cc.done:
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		cc.fail(err)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cc.mu.Lock()
		end := cc.err
		cc.mu.Unlock()
		return nil, cc.wrap(end)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-cc.done:
		select {
		case r := <-ch: // answered just before the end
			return r, nil
		default:
		}
		return nil, cc.wrap(cc.err)
	case <-ctx.Done():
		// The agent may still sign it; a retry of the same CSR gets
		// that chain.
		forget()
		return nil, ctx.Err()
	}
}

// wrap: an error the agent sent when it closed the connection (busy,
// forbidden, shutting down) is returned as is; anything else is a lost
// connection.
func (cc *clientConn) wrap(err error) error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	return &lostError{err}
}

// fail ends the connection and wakes everyone waiting on it.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil {
		return
	}
	cc.err = err
	cc.nc.Close()
	close(cc.done)
}

func (cc *clientConn) readLoop() {
	br := bufio.NewReaderSize(cc.nc, 16<<10)
	for {
		line, tooLong, err := readLine(br, maxResponseLine)
		if tooLong {
			cc.fail(fmt.Errorf("%w: answer longer than %d bytes", ErrBadResponse, maxResponseLine))
			return
		}
		if len(bytes.TrimSpace(line)) > 0 {
			var r response
			if jerr := json.Unmarshal(line, &r); jerr != nil {
				cc.fail(fmt.Errorf("%w: %v", ErrBadResponse, jerr))
				return
			}
			cc.mu.Lock()
			ch, ok := cc.pending[r.ID]
			delete(cc.pending, r.ID)
			cc.mu.Unlock()
			switch {
			case ok:
				ch <- &r
			case r.ID == "" && r.Error != nil:
				// The agent refused the connection (or could not read a
				// request): every request on it fails with that.
				cc.fail(&Error{Code: r.Error.Code, Reason: r.Error.Reason, Message: r.Error.Message})
				return
			}
			// An answer nobody waits for (its ctx ended) is dropped.
		}
		if err != nil {
			cc.fail(err)
			return
		}
	}
}

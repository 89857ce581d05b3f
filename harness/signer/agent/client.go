package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
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

	"hilbench/harness/device"
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
// once more on the new connection: every operation is idempotent (the
// ledger answers a key it holds a chain for with that chain, and spends no
// budget). Issuer presents the client as a device.Issuer.
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
	CSRSHA256 string // SHA-256 of the CSR DER sent, hex
	// Reused is set when the ledger already held a chain for the CSR's key
	// (a retry, possibly across an agent restart, or a device that made a
	// new CSR for the same key): the chain is the ledger's and nothing was
	// signed.
	Reused  bool
	Budget  *BudgetInfo // the ledger's count; nil when it could not be read
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
// the device or station slot (it goes to the ledger and the audit log).
// Errors match pki.ErrCSRRejected, ledger.ErrBudgetExhausted,
// ErrSignerFailed, ErrAuditFailed, ErrLedgerFailed, ErrBusy,
// ErrShuttingDown, ErrNoAgent...
func (c *Client) Issue(ctx context.Context, target string, csrPEM []byte) (*pki.Issued, error) {
	r, err := c.IssueResult(ctx, target, csrPEM)
	if err != nil {
		return nil, err
	}
	return r.Issued, nil
}

// IssueResult is Issue with what the agent said besides the chain.
func (c *Client) IssueResult(ctx context.Context, target string, csrPEM []byte) (*Result, error) {
	return c.issue(ctx, device.IssueRequest{Target: target, CSRPEM: csrPEM})
}

func (c *Client) issue(ctx context.Context, req device.IssueRequest) (*Result, error) {
	wr := &request{Op: OpIssue, Target: req.Target, DeviceID: req.DeviceID, CSR: string(req.CSRPEM)}
	if req.Replaces != nil {
		wr.Replaces = string(pki.EncodeChainPEM([]*x509.Certificate{req.Replaces}))
	}
	r, err := c.do(ctx, wr)
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", req.Target, err)
	}
	is, err := issuedFrom(req.CSRPEM, r)
	if err != nil {
		return nil, fmt.Errorf("issuing a certificate for %s: %w", req.Target, err)
	}
	return &Result{Issued: is, Serial: r.Serial, SHA256: r.SHA256, CSRSHA256: r.CSRSHA256,
		Reused: r.Reused, Budget: r.Budget, Warning: r.Warning}, nil
}

// Issuer is a Client as a device.Issuer: drivers provision through the
// agent exactly as through a station's own pipeline.
type Issuer struct {
	c     *Client
	roots []*x509.Certificate
}

var _ device.Issuer = (*Issuer)(nil)

// Issuer presents c as a device.Issuer whose chains verify to roots (the
// bench's trust anchors: the agent does not choose them for its clients).
func (c *Client) Issuer(roots []*x509.Certificate) *Issuer {
	return &Issuer{c: c, roots: roots}
}

// Client is the connection the Issuer uses.
func (i *Issuer) Client() *Client { return i.c }

// Roots are the trust anchors chains must verify to.
func (i *Issuer) Roots() []*x509.Certificate { return i.roots }

// Issue returns the chain for the CSR's key: the ledger's, or a new one.
func (i *Issuer) Issue(ctx context.Context, req device.IssueRequest) (*pki.Issued, error) {
	r, err := i.c.issue(ctx, req)
	if err != nil {
		return nil, err
	}
	return r.Issued, nil
}

// IssueResult is Issue with what the agent said besides the chain.
func (i *Issuer) IssueResult(ctx context.Context, req device.IssueRequest) (*Result, error) {
	return i.c.issue(ctx, req)
}

// Lookup is what the agent's ledger holds for a device public key; nil,
// nil when it knows nothing.
func (i *Issuer) Lookup(ctx context.Context, pub crypto.PublicKey) (*device.Known, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("looking up a device key in the signing agent's ledger: %w", err)
	}
	r, err := i.c.do(ctx, &request{Op: OpLookup, Key: base64.StdEncoding.EncodeToString(der)})
	if err != nil {
		return nil, fmt.Errorf("looking up a device key in the signing agent's ledger: %w", err)
	}
	k, err := knownFrom(pub, r)
	if err != nil {
		return nil, fmt.Errorf("looking up a device key in the signing agent's ledger: %w", err)
	}
	return k, nil
}

// knownFrom parses a lookup answer and checks that its chain is for pub.
func knownFrom(pub crypto.PublicKey, r *response) (*device.Known, error) {
	if r.State == "" {
		return nil, nil
	}
	k := &device.Known{State: r.State}
	if r.Chain == "" {
		if r.State != "reserved" {
			return nil, fmt.Errorf("%w: state %s without a chain", ErrBadResponse, r.State)
		}
		return k, nil
	}
	chain, err := pki.ParseChainPEM([]byte(r.Chain))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: chain: %v", ErrBadResponse, err)
	case r.SHA256 != audit.SHA256Hex(chain[0].Raw):
		return nil, fmt.Errorf("%w: certificate SHA-256 %s does not match the chain", ErrBadResponse, r.SHA256)
	case !pki.SamePublicKey(chain[0].PublicKey, pub):
		return nil, fmt.Errorf("%w: the chain certifies another public key than the one looked up", ErrBadResponse)
	}
	k.Issued = &pki.Issued{CSR: &x509.CertificateRequest{PublicKey: pub}, Certificate: chain[0], Chain: chain, ChainPEM: []byte(r.Chain)}
	return k, nil
}

// Stored records in the agent's ledger that the device holds leaf's chain.
func (i *Issuer) Stored(ctx context.Context, leaf *x509.Certificate) error {
	return i.advance(ctx, OpStored, leaf)
}

// Verified records in the agent's ledger that leaf's chain was read back
// from the device and verified.
func (i *Issuer) Verified(ctx context.Context, leaf *x509.Certificate) error {
	return i.advance(ctx, OpVerified, leaf)
}

func (i *Issuer) advance(ctx context.Context, op string, leaf *x509.Certificate) error {
	if leaf == nil {
		return fmt.Errorf("recording a certificate as %s: no certificate", op)
	}
	_, err := i.c.do(ctx, &request{Op: op, Certificate: string(pki.EncodeChainPEM([]*x509.Certificate{leaf}))})
	if err != nil {
		return fmt.Errorf("recording certificate %s as %s in the signing agent's ledger: %w", audit.SerialHex(leaf), op, err)
	}
	return nil
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
	if errors.Is(err, net.ErrClosed) {
		// The connection had already ended (the agent closed it idle, or it broke): closed is closed.
		return nil
	}
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

package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"hilbench/harness/signer/audit"
)

// conn is one client connection. Its reader goroutine parses requests and
// answers what needs no DAK; its writer goroutine sends answers, so the
// worker never waits for a slow client.
//
// Bounds (Server's IdleTimeout, ReadTimeout, WriteTimeout, MaxPending,
// MaxPendingTotal): a connection idle too long is closed, a request line
// unfinished too long is cut off, a client that does not read its answers
// is dropped, and when the client table is full the connection idle the
// longest makes room for a new one.
type conn struct {
	rt   *runtime
	nc   *net.UnixConn
	peer *audit.Peer

	queue []*job // guarded by rt.q.mu

	// lineStart is when the first byte of the request line being read
	// arrived (unix ns; 0: no unfinished line). lastActive is when the
	// client last finished a request or was last answered, or connected.
	// Written by the reader (and writer), read by startConn to evict.
	lineStart  atomic.Int64
	lastActive atomic.Int64

	mu       sync.Mutex
	out      []byte // answers not yet written
	writing  int    // bytes of answers the writer is writing now
	inflight int    // issue requests queued or with the DAK
	readDone bool
	dead     bool
	wake     chan struct{} // capacity 1
	drained  chan struct{} // capacity 1: the writer wrote (or gave up)
}

func (rt *runtime) startConn(nc *net.UnixConn) {
	peer := peerOf(nc)
	if peer != nil && peer.UID != os.Geteuid() && peer.UID != 0 {
		rt.logf("signing agent: refused a connection from uid %d (pid %d): the agent serves uid %d only", peer.UID, peer.PID, os.Geteuid())
		refuse(nc, CodeForbidden, fmt.Sprintf("this agent serves uid %d only", os.Geteuid()))
		return
	}
	c := &conn{rt: rt, nc: nc, peer: peer, wake: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	c.lastActive.Store(time.Now().UnixNano())
	rt.mu.Lock()
	if rt.closing {
		rt.mu.Unlock()
		refuse(nc, CodeShuttingDown, "the signing agent is shutting down")
		return
	}
	var evicted *conn
	if len(rt.conns) >= rt.maxClients {
		evicted = rt.longestIdle()
		if evicted == nil {
			rt.mu.Unlock()
			refuse(nc, CodeBusy, fmt.Sprintf("the signing agent has %d clients connected, its maximum, all of them busy: retry later", rt.maxClients))
			return
		}
		delete(rt.conns, evicted)
	}
	rt.conns[c] = struct{}{}
	rt.wg.Add(2)
	rt.mu.Unlock()
	if evicted != nil {
		idle := time.Since(time.Unix(0, evicted.lastActive.Load())).Round(time.Millisecond)
		evicted.drop(fmt.Sprintf("closed to make room for a new client (%d clients, the maximum; it was idle the longest, %v)", rt.maxClients, idle), false)
	}
	go c.readLoop()
	go c.writeLoop()
}

// longestIdle is the connection idle the longest, nil if every one is busy
// (a request line unfinished, a request in progress or an answer unwritten).
// rt.mu is held.
func (rt *runtime) longestIdle() *conn {
	var best *conn
	var bestAt int64
	for c := range rt.conns {
		if c.lineStart.Load() != 0 || c.busy() {
			continue
		}
		if at := c.lastActive.Load(); best == nil || at < bestAt {
			best, bestAt = c, at
		}
	}
	return best
}

// busy: the client waits for an answer, or has answers to read.
func (c *conn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.dead && (c.inflight > 0 || len(c.out) > 0 || c.writing > 0)
}

// refuse answers a connection the agent will not serve, then closes it.
func refuse(nc *net.UnixConn, code, msg string) {
	line, _ := json.Marshal(errResponse("", code, msg))
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(append(line, '\n'))
	nc.Close()
}

// connReader reads from the client with the deadline that applies: the end
// of ReadTimeout from the first byte of an unfinished request line, else
// IdleTimeout from the client's last activity.
type connReader struct{ c *conn }

func (r connReader) Read(p []byte) (int, error) {
	c := r.c
	now := time.Now()
	if c.rt.stopping.Load() {
		c.nc.SetReadDeadline(now) // Serve is stopping: read what is there
	} else if ls := c.lineStart.Load(); ls != 0 {
		c.nc.SetReadDeadline(time.Unix(0, ls).Add(c.rt.readTimeout))
	} else {
		d := time.Unix(0, c.lastActive.Load()).Add(c.rt.idleTimeout)
		if !d.After(now) {
			d = now.Add(c.rt.idleTimeout) // busy meanwhile: look again then
		}
		c.nc.SetReadDeadline(d)
	}
	n, err := c.nc.Read(p)
	if n > 0 && c.lineStart.Load() == 0 {
		c.lineStart.Store(time.Now().UnixNano())
	}
	return n, err
}

// stayOpen: a read deadline passed with no request line begun; the
// connection stays open if the client waits for answers (or reads them),
// or has not been idle for IdleTimeout yet.
func (c *conn) stayOpen() bool {
	if c.rt.stopping.Load() {
		return false
	}
	now := time.Now()
	if c.busy() {
		c.lastActive.Store(now.UnixNano())
		return true
	}
	return now.Sub(time.Unix(0, c.lastActive.Load())) < c.rt.idleTimeout
}

func (c *conn) readLoop() {
	defer c.rt.wg.Done()
	br := bufio.NewReaderSize(connReader{c}, 4<<10)
	for {
		c.waitDrained()
		line, tooLong, err := c.readRequest(br)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.rt.stopping.Load() {
				break
			}
			if ls := c.lineStart.Load(); ls != 0 {
				c.rt.logf("signing agent: closed the connection of client %s: a request line begun %v ago is still unfinished (read timeout %v)",
					peerText(c.peer), time.Since(time.Unix(0, ls)).Round(time.Millisecond), c.rt.readTimeout)
			} else {
				c.rt.logf("signing agent: closed the connection of client %s: idle for %v", peerText(c.peer), c.rt.idleTimeout)
			}
			break
		}
		now := time.Now().UnixNano()
		c.lastActive.Store(now)
		if br.Buffered() > 0 {
			c.lineStart.Store(now) // the next request has begun
		} else {
			c.lineStart.Store(0)
		}
		switch {
		case tooLong:
			c.send(errResponse("", CodeBadRequest, fmt.Sprintf("request line longer than %d bytes: not a request", MaxRequestLine)))
		case len(bytes.TrimSpace(line)) > 0:
			c.handle(line)
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	c.readDone = true
	c.mu.Unlock()
	c.signal()
}

// waitDrained holds the reader while the client has more answers unread
// than pauseAt: a client that sends requests without reading the answers
// costs the agent nothing more until it reads, or is dropped when writing
// to it has not progressed for WriteTimeout.
func (c *conn) waitDrained() {
	limit := c.rt.maxPending / 16
	for {
		c.mu.Lock()
		over := !c.dead && len(c.out)+c.writing >= limit
		c.mu.Unlock()
		if !over || c.rt.stopping.Load() {
			return
		}
		select {
		case <-c.drained:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *conn) signalDrained() {
	select {
	case c.drained <- struct{}{}:
	default:
	}
}

// readRequest is readLine for the agent's side: a read deadline that passes
// while no request line has begun and the connection is to stay open is
// waited through.
func (c *conn) readRequest(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		var frag []byte
		frag, err = br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > MaxRequestLine+1 || (err != nil && len(line)+len(frag) > MaxRequestLine) {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded) && c.lineStart.Load() == 0 && c.stayOpen():
			continue
		}
		return line, tooLong, err
	}
}

// readLine reads one line of at most max bytes (newline excluded). A longer
// line is consumed up to its newline and reported as tooLong. A last line
// without a newline is returned with the read error.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max+1 || (err != nil && len(line)+len(frag) > max) {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, tooLong, err
	}
}

func (c *conn) handle(line []byte) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		c.send(errResponse("", CodeBadRequest, "not a valid request (one JSON object per line): "+err.Error()))
		return
	}
	switch req.Op {
	case OpIssue:
		c.rt.issue(c, &req)
	case OpLookup:
		c.rt.lookup(c, &req)
	case OpStored, OpVerified:
		c.rt.advance(c, &req)
	case OpStatus:
		c.send(response{ID: req.ID, OK: true, Status: c.rt.status()})
	case "":
		c.send(errResponse(req.ID, CodeBadRequest, `request has no "op" (want `+opsText+`)`))
	default:
		c.send(errResponse(req.ID, CodeBadRequest, fmt.Sprintf(`unknown op %q (want %s)`, req.Op, opsText)))
	}
}

func (c *conn) addInflight() {
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
}

// send queues an answer that does not finish an issue job.
func (c *conn) send(r response) { c.enqueue(r, false) }

// sendJob queues the answer to a job counted by addInflight.
func (c *conn) sendJob(r response) { c.enqueue(r, true) }

func (c *conn) enqueue(r response, job bool) {
	line, err := json.Marshal(r)
	if err != nil {
		line, _ = json.Marshal(errResponse(r.ID, CodeSignerFailed, "internal: encoding the answer: "+err.Error()))
	}
	c.mu.Lock()
	if job {
		c.inflight--
	}
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.out = append(c.out, line...)
	c.out = append(c.out, '\n')
	total := c.rt.pending.Add(int64(len(line) + 1))
	mine := len(c.out) + c.writing
	c.mu.Unlock()
	switch {
	case mine > c.rt.maxPending:
		c.drop(fmt.Sprintf("dropped: %d bytes of answers unread, more than %d", mine, c.rt.maxPending), true)
		return
	case total > int64(c.rt.maxTotal) && mine > c.rt.maxPending/16:
		c.drop(fmt.Sprintf("dropped: %d bytes of answers unread while all clients have %d unread, more than %d", mine, total, c.rt.maxTotal), true)
		return
	}
	c.signal()
}

// drop closes the connection from the agent's side: its unwritten answers
// and queued requests are dropped (nothing is signed for them; a retry is
// answered as usual).
func (c *conn) drop(why string, notReading bool) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.discardOut()
	c.mu.Unlock()
	c.nc.Close()
	queued := c.rt.q.drop(c)
	if notReading {
		c.rt.dropped.Add(1)
	}
	c.rt.logf("signing agent: client %s %s; %d queued requests dropped", peerText(c.peer), why, len(queued))
	c.signal()
}

// discardOut forgets the unwritten answers; c.mu is held.
func (c *conn) discardOut() {
	c.rt.pending.Add(-int64(len(c.out)))
	c.out = nil
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (c *conn) writeLoop() {
	defer c.rt.wg.Done()
	defer c.finish()
	for range c.wake {
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			return
		}
		buf := c.out
		c.out = nil
		c.writing = len(buf)
		c.mu.Unlock()
		if len(buf) > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.rt.writeTimeout))
			_, err := c.nc.Write(buf)
			c.mu.Lock()
			c.writing = 0
			c.mu.Unlock()
			c.rt.pending.Add(-int64(len(buf)))
			c.signalDrained()
			if err != nil {
				c.kill(err)
				return
			}
			c.lastActive.Store(time.Now().UnixNano())
		}
		c.mu.Lock()
		done := c.readDone && c.inflight <= 0 && len(c.out) == 0
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// kill gives up on a client that cannot be written to: its queued requests
// are dropped (nothing is signed for them; a retry is answered as usual).
func (c *conn) kill(err error) {
	c.mu.Lock()
	wasDead := c.dead
	c.dead = true
	c.discardOut()
	c.mu.Unlock()
	c.nc.Close()
	dropped := c.rt.q.drop(c)
	switch {
	case wasDead:
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.rt.dropped.Add(1)
		c.rt.logf("signing agent: client %s dropped: its answers unread for %v (write timeout); %d queued requests dropped",
			peerText(c.peer), c.rt.writeTimeout, len(dropped))
	case len(dropped) > 0:
		c.rt.logf("signing agent: client %s went away (%v): dropped its %d queued requests", peerText(c.peer), errText(err), len(dropped))
	}
}

func errText(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return "closed"
	}
	return err.Error()
}

// finish closes the connection once the writer is done with it.
func (c *conn) finish() {
	c.mu.Lock()
	c.dead = true
	c.discardOut()
	c.mu.Unlock()
	c.nc.Close()
	c.rt.q.drop(c)
	c.rt.mu.Lock()
	delete(c.rt.conns, c)
	c.rt.mu.Unlock()
}

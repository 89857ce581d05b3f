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
	"time"

	"hilbench/harness/signer/audit"
)

// conn is one client connection. Its reader goroutine parses requests and
// answers what needs no DAK; its writer goroutine sends answers, so the
// worker never waits for a slow client.
type conn struct {
	rt   *runtime
	nc   *net.UnixConn
	peer *audit.Peer

	queue []*job // guarded by rt.q.mu

	mu       sync.Mutex
	out      []byte // answers not yet written
	inflight int    // issue requests queued or with the DAK
	readDone bool
	dead     bool
	wake     chan struct{} // capacity 1
}

func (rt *runtime) startConn(nc *net.UnixConn) {
	peer := peerOf(nc)
	if peer != nil && peer.UID != os.Geteuid() && peer.UID != 0 {
		rt.logf("signing agent: refused a connection from uid %d (pid %d): the agent serves uid %d only", peer.UID, peer.PID, os.Geteuid())
		refuse(nc, CodeForbidden, fmt.Sprintf("this agent serves uid %d only", os.Geteuid()))
		return
	}
	c := &conn{rt: rt, nc: nc, peer: peer, wake: make(chan struct{}, 1)}
	rt.mu.Lock()
	switch {
	case rt.closing:
		rt.mu.Unlock()
		refuse(nc, CodeShuttingDown, "the signing agent is shutting down")
		return
	case len(rt.conns) >= rt.maxClients:
		rt.mu.Unlock()
		refuse(nc, CodeBusy, fmt.Sprintf("the signing agent has %d clients connected, its maximum: retry later", rt.maxClients))
		return
	}
	rt.conns[c] = struct{}{}
	rt.wg.Add(2)
	rt.mu.Unlock()
	go c.readLoop()
	go c.writeLoop()
}

// refuse answers a connection the agent will not serve, then closes it.
func refuse(nc *net.UnixConn, code, msg string) {
	line, _ := json.Marshal(errResponse("", code, msg))
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(append(line, '\n'))
	nc.Close()
}

func (c *conn) readLoop() {
	defer c.rt.wg.Done()
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for {
		line, tooLong, err := readLine(br, MaxRequestLine)
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
	if !c.dead {
		c.out = append(c.out, line...)
		c.out = append(c.out, '\n')
	}
	c.mu.Unlock()
	c.signal()
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
		buf := c.out
		c.out = nil
		c.mu.Unlock()
		if len(buf) > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.rt.writeTimeout))
			if _, err := c.nc.Write(buf); err != nil {
				c.kill(err)
				return
			}
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
	c.dead = true
	c.mu.Unlock()
	c.nc.Close()
	if dropped := c.rt.q.drop(c); len(dropped) > 0 {
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
	c.mu.Unlock()
	c.nc.Close()
	c.rt.q.drop(c)
	c.rt.mu.Lock()
	delete(c.rt.conns, c)
	c.rt.mu.Unlock()
}

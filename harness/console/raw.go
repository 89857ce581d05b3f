package console

import (
	"context"
	"io"
	"sync"
	"time"
)

// maxRaw bounds what a raw transfer may leave unread; beyond it the oldest
// bytes go, as a UART's receive buffer would lose them.
const maxRaw = 1 << 20

// Raw hands the line to fn for a binary transfer (YMODEM, a vendor's
// bootloader protocol): while fn runs, received bytes go to the reader fn
// gets instead of the console's text matching, and its writes go straight to
// the device. Bytes are counted in Stats; the transcript gets a note with
// the byte counts instead of binary data. The reader returns io.EOF once fn
// has returned (a goroutine fn started to read ends then). Text that was
// pending before Raw, and bytes fn left unread, are dropped.
func (c *Console) Raw(ctx context.Context, what string, fn func(rw io.ReadWriter) error) error {
	start := time.Now()
	if err := c.begin(ctx, start, what); err != nil {
		return err
	}
	defer c.end()
	c.setLast(what)
	r := &rawLine{c: c, notify: make(chan struct{})}
	c.mu.Lock()
	c.pending = c.pending[:0]
	c.raw = r
	c.mu.Unlock()
	tx0, rx0 := c.tx.Load(), c.rx.Load()
	c.tr.Note("%s: raw transfer %q begins", c.name, what)
	err := fn(r)
	c.mu.Lock()
	c.raw = nil
	c.mu.Unlock()
	r.close()
	c.tr.Note("%s: raw transfer %q ends after %s: %d bytes sent, %d received", c.name, what,
		time.Since(start).Round(time.Millisecond), c.tx.Load()-tx0, c.rx.Load()-rx0)
	return err
}

// rawLine is the console's line during Raw.
type rawLine struct {
	c      *Console
	mu     sync.Mutex
	buf    []byte
	closed bool
	notify chan struct{}
}

func (r *rawLine) feed(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.buf = append(r.buf, p...)
	if len(r.buf) > maxRaw {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-maxRaw:]...)
	}
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *rawLine) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.notify)
	}
}

func (r *rawLine) Read(p []byte) (int, error) { return r.ReadContext(context.Background(), p) }

// ReadContext is Read that gives up when ctx ends; bytes already received are returned even
// then. A YMODEM sender reads this way in its own goroutine (flash.ContextReader).
func (r *rawLine) ReadContext(ctx context.Context, p []byte) (int, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return 0, io.EOF
		}
		if len(r.buf) > 0 {
			n := copy(p, r.buf)
			r.buf = r.buf[n:]
			r.mu.Unlock()
			return n, nil
		}
		ch := r.notify
		r.mu.Unlock()
		select {
		case <-ch:
		case <-r.c.done:
			return 0, ErrClosed
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (r *rawLine) Write(p []byte) (int, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, io.ErrClosedPipe
	}
	r.c.wlock <- struct{}{}
	n, err := r.c.rw.Write(p)
	<-r.c.wlock
	r.c.tx.Add(int64(n))
	return n, err
}

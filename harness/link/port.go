package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.bug.st/serial"
)

// Sentinels for errors.Is. Errors after Close wrap net.ErrClosed.
var (
	ErrNotFound     = errors.New("serial port not found")
	ErrAmbiguous    = errors.New("more than one serial port matches")
	ErrBusy         = errors.New("serial port busy")
	ErrDisconnected = errors.New("serial port disconnected")
)

// Timing of the polling loops. readTick bounds how late a Read notices ctx or
// a vanished device (Close wakes it at once: see Close); retryEvery is how often a missing port is
// looked for again; closeGrace is how long Close waits for a Write stuck on
// flow control before closing the descriptor under it.
const (
	readTick   = 50 * time.Millisecond
	retryEvery = 100 * time.Millisecond
	closeGrace = time.Second
)

// Port is an open serial port. Read and Write may be used from different
// goroutines; Close unblocks both.
type Port struct {
	cfg  Config
	mode *serial.Mode

	// io is held shared while a Write uses sp and exclusively to close or
	// replace it, so no write ever reaches a closed (and possibly reused) file
	// descriptor. Reads do not hold it: go.bug.st/serial's Close wakes a
	// pending Read through its own signal pipe and waits for it to leave, so
	// closing need not wait out a read tick.
	io sync.RWMutex

	mu   sync.Mutex // guards sp, path and lock
	sp   serial.Port
	path string
	lock *portLock // the advisory lock of path's resolved node: held while the node is there, from Open to Close

	relock chan struct{} // one-slot lock: one goroutine reopens at a time
	done   chan struct{} // closed by Close
	once   sync.Once
}

var _ io.ReadWriteCloser = (*Port)(nil)

// Open validates cfg, finds the port and opens it. With cfg.Reopen > 0, a
// port that cannot be opened yet (missing, busy, mid re-enumeration) is
// tried again every 100ms for up to that long, within ctx.
func Open(ctx context.Context, cfg Config) (*Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mode, _ := cfg.mode() // validated above
	p := &Port{cfg: cfg, mode: mode, relock: make(chan struct{}, 1), done: make(chan struct{})}
	p.path = cfg.Port
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("link: opening %s: %w", p.describe(), err)
	}
	sp, path, err := p.dial(ctx, cfg.Reopen)
	if err != nil {
		p.releaseLock()
		return nil, err
	}
	p.sp, p.path = sp, path
	return p, nil
}

// Path is the device path currently in use (for a USB identity, the node
// found at the last open).
func (p *Port) Path() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.path
}

// Read reads at least one byte. It blocks until data arrives, the port is
// closed (error wrapping net.ErrClosed) or fails; it never returns (0, nil)
// for a non-empty b.
func (p *Port) Read(b []byte) (int, error) {
	return p.ReadContext(context.Background(), b)
}

// ReadContext is Read that also gives up when ctx ends (within one read tick).
func (p *Port) ReadContext(ctx context.Context, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if p.isClosed() {
			return 0, p.closedErr("read")
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("link: reading %s: %w", p.Path(), err)
		}
		sp := p.current()
		if sp == nil { // an earlier reopen failed; try again
			if err := p.reconnect(ctx, nil, ErrDisconnected); err != nil {
				return 0, err
			}
			continue
		}
		// A concurrent Close or reopen closes sp under this Read: the driver
		// returns an error at once, and the loop finds the port closed or
		// replaced.
		n, err := sp.Read(b)
		if n > 0 {
			return n, nil // a trailing error shows up again on the next Read
		}
		if err == nil {
			continue // read timeout tick: go.bug.st/serial returns (0, nil)
		}
		if p.isClosed() {
			return 0, p.closedErr("read")
		}
		if p.current() != sp {
			continue // Reopen closed sp under us on purpose
		}
		if err := p.reconnect(ctx, sp, err); err != nil {
			return 0, err
		}
	}
}

// Write writes all of b. With Config.Reopen > 0 a vanished port is waited
// for and the rest of b goes to the port that came back.
func (p *Port) Write(b []byte) (int, error) {
	total := 0
	for total < len(b) {
		if p.isClosed() {
			return total, p.closedErr("write")
		}
		p.io.RLock()
		sp := p.current()
		if sp == nil {
			p.io.RUnlock()
			if err := p.reconnect(context.Background(), nil, ErrDisconnected); err != nil {
				return total, err
			}
			continue
		}
		n, err := sp.Write(b[total:])
		p.io.RUnlock()
		total += n
		if err == nil {
			continue
		}
		if p.isClosed() {
			return total, p.closedErr("write")
		}
		if err := p.reconnect(context.Background(), sp, err); err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close closes the port, releases its lock and unblocks pending Reads
// (at once: the driver's close wakes them) and Writes. It never hangs: it waits at most
// closeGrace for a Write stuck on flow control and closeGrace for the
// driver's close (a UART's close may wait for unsent output to drain; that
// one finishes in the background). Closing twice is harmless.
func (p *Port) Close() error {
	var err error
	p.once.Do(func() {
		close(p.done)
		unlock := p.lockIO()
		p.mu.Lock()
		sp := p.sp
		p.sp = nil
		p.mu.Unlock()
		if sp != nil {
			p.dropLockIfGone()
			if cerr := closeBounded(sp); cerr != nil {
				err = fmt.Errorf("link: closing %s: %w", p.Path(), cerr)
			}
		}
		unlock()
		if lerr := p.releaseLock(); lerr != nil && err == nil {
			err = fmt.Errorf("link: unlocking %s: %w", p.Path(), lerr)
		}
	})
	return err
}

// closeBounded closes sp, giving up waiting after closeGrace.
func closeBounded(sp serial.Port) error {
	done := make(chan error, 1)
	go func() { done <- sp.Close() }()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return nil // the descriptor is closed; the driver finishes draining on its own
	}
}

// ensureLock makes p hold the lock of the node path resolves to, taking
// it (and dropping the lock of an earlier node) when the port moved.
func (p *Port) ensureLock(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return classify(path, err)
	}
	real, _ = filepath.Abs(real)
	p.mu.Lock()
	cur := p.lock
	p.mu.Unlock()
	if cur != nil && cur.path == real {
		return nil
	}
	lk, err := lockPort(path)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.isClosed() {
		p.mu.Unlock()
		_ = lk.release()
		return p.closedErr("open")
	}
	old := p.lock
	p.lock = lk
	p.mu.Unlock()
	_ = old.release()
	return nil
}

func (p *Port) releaseLock() error {
	p.mu.Lock()
	lk := p.lock
	p.lock = nil
	p.mu.Unlock()
	return lk.release()
}

// Reopen closes the port and finds and opens it again with the same Config,
// e.g. after the device rebooted. It retries until ctx ends or, when
// Config.Reopen > 0, that long has passed; with neither bound it tries once.
func (p *Port) Reopen(ctx context.Context) error {
	if err := p.acquireReconnect(ctx); err != nil {
		return err
	}
	defer func() { <-p.relock }()
	p.dropCurrent(nil, true)
	wait := p.cfg.Reopen
	if dl, ok := ctx.Deadline(); ok && (wait <= 0 || time.Until(dl) < wait) {
		wait = time.Until(dl)
	}
	sp, path, err := p.dial(ctx, wait)
	if err != nil {
		return fmt.Errorf("link: reopening: %w", err)
	}
	return p.install(sp, path)
}

// reconnect handles a failed driver call on failed (nil: no port installed).
// Without Config.Reopen it reports the disconnection; with it, it waits for
// the port to come back and installs it. Concurrent callers for the same
// failure share one reopen.
func (p *Port) reconnect(ctx context.Context, failed serial.Port, cause error) error {
	path := p.Path()
	// Waiting for the turn also waits out a Reopen running now, which
	// closed failed (or left no port installed) on purpose.
	if err := p.acquireReconnect(ctx); err != nil {
		return err
	}
	defer func() { <-p.relock }()
	if cur := p.current(); cur != nil && cur != failed {
		return nil // reopened meanwhile
	}
	if p.cfg.Reopen <= 0 {
		return fmt.Errorf("link: %s: %w: %w", path, ErrDisconnected, cause)
	}
	if !p.dropCurrent(failed, false) {
		return nil // someone else reopened it meanwhile
	}
	sp, newPath, err := p.dial(ctx, p.cfg.Reopen)
	if err != nil {
		if errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("link: %s vanished (%v) and did not come back within %s: %w: %w",
			path, cause, p.cfg.Reopen, ErrDisconnected, err)
	}
	return p.install(sp, newPath)
}

func (p *Port) acquireReconnect(ctx context.Context) error {
	select {
	case p.relock <- struct{}{}:
		return nil
	case <-p.done:
		return p.closedErr("reopen")
	case <-ctx.Done():
		return fmt.Errorf("link: waiting to reopen %s: %w", p.Path(), ctx.Err())
	}
}

// dropCurrent closes and removes the installed port if it is still failed
// (or unconditionally with force). It reports whether the caller should open a
// new one.
func (p *Port) dropCurrent(failed serial.Port, force bool) bool {
	unlock := p.lockIO()
	defer unlock()
	p.mu.Lock()
	sp := p.sp
	if !force && sp != failed {
		p.mu.Unlock()
		return false
	}
	p.sp = nil
	p.mu.Unlock()
	if sp != nil {
		p.dropLockIfGone()
		_ = sp.Close() // it already failed; its close error tells nothing new
	}
	return true
}

// dropLockIfGone releases the port's lock when its device node no longer exists (the device left
// the bus). Called while a descriptor still holds the node, so the number cannot have gone to
// another device yet; once the descriptor closes it may, and this port's lock must not keep that
// device from its own user. The next open takes the lock of whatever node it finds.
func (p *Port) dropLockIfGone() {
	p.mu.Lock()
	lk := p.lock
	if lk == nil || !nodeGone(lk.path) {
		p.mu.Unlock()
		return
	}
	p.lock = nil
	p.mu.Unlock()
	_ = lk.release()
}

// releaseIfMissing drops the lock when an open found no device: this port holds no descriptor
// then, so the lock guards nothing, and the number it names may go to another device meanwhile.
func (p *Port) releaseIfMissing(err error) {
	if errors.Is(err, ErrNotFound) {
		_ = p.releaseLock()
	}
}

// nodeGone reports whether the device node at path no longer exists.
func nodeGone(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

func (p *Port) install(sp serial.Port, path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed() { // Close ran while we were reopening
		_ = sp.Close()
		return p.closedErr("reopen")
	}
	p.sp, p.path = sp, path
	return nil
}

func (p *Port) current() serial.Port {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sp
}

// lockIO takes p.io exclusively. A Write stuck in the driver (the far end
// stopped reading) would hold it forever, so after closeGrace it gives up
// waiting: closing a descriptor under a blocked syscall is safe, the
// syscall keeps its own reference to the file.
func (p *Port) lockIO() (unlock func()) {
	locked := make(chan struct{})
	go func() {
		p.io.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		return p.io.Unlock
	case <-time.After(closeGrace):
		go func() {
			<-locked
			p.io.Unlock()
		}()
		return func() {}
	}
}

// dial resolves the port (path or USB identity) and opens it, retrying
// every retryEvery for up to wait (0: once).
func (p *Port) dial(ctx context.Context, wait time.Duration) (serial.Port, string, error) {
	deadline := time.Now().Add(wait)
	for {
		sp, path, err := p.openOnce()
		if err == nil {
			return sp, path, nil
		}
		if errors.Is(err, ErrInUse) || errors.Is(err, net.ErrClosed) {
			return nil, path, err // another process holds it: say so at once
		}
		if wait <= 0 || !time.Now().Add(retryEvery).Before(deadline) {
			return nil, path, err
		}
		t := time.NewTimer(retryEvery)
		select {
		case <-t.C:
		case <-p.done:
			t.Stop()
			return nil, path, p.closedErr("open")
		case <-ctx.Done():
			t.Stop()
			return nil, path, fmt.Errorf("link: waiting for %s: %w (last: %v)", p.describe(), ctx.Err(), err)
		}
	}
}

func (p *Port) openOnce() (serial.Port, string, error) {
	path := p.cfg.Port
	if p.cfg.USB != nil {
		var err error
		if path, err = Find(*p.cfg.USB); err != nil {
			p.releaseIfMissing(err)
			return nil, "", err
		}
	}
	if err := p.ensureLock(path); err != nil {
		p.releaseIfMissing(err)
		return nil, path, err
	}
	sp, err := serial.Open(path, p.mode)
	if err != nil {
		err = classify(path, err)
		p.releaseIfMissing(err)
		return nil, path, err
	}
	if err := sp.SetReadTimeout(readTick); err != nil {
		_ = sp.Close()
		return nil, path, fmt.Errorf("link: setting read timeout on %s: %w", path, err)
	}
	return sp, path, nil
}

// classify maps driver errors to the package sentinels while keeping the
// driver's error in the chain.
func classify(path string, err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortBusy:
			return fmt.Errorf("link: opening %s: %w: %w", path, ErrBusy, err)
		case serial.PortNotFound:
			return fmt.Errorf("link: opening %s: %w: %w", path, ErrNotFound, err)
		case serial.PermissionDenied:
			return fmt.Errorf("link: opening %s: %w: %w", path, fs.ErrPermission, err)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("link: opening %s: %w: %w", path, ErrNotFound, err)
	}
	return fmt.Errorf("link: opening %s: %w", path, err)
}

func (p *Port) describe() string {
	if p.cfg.USB != nil {
		return "USB " + p.cfg.USB.String()
	}
	return p.cfg.Port
}

func (p *Port) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *Port) closedErr(op string) error {
	return fmt.Errorf("link: %s %s: %w", op, p.Path(), net.ErrClosed)
}

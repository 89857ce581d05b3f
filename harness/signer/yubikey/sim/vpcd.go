package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The vpcd transport (vsmartcard's pcscd reader driver, ifd-vpcd). pcscd's
// vpcd driver listens on TCP (35963 for reader "Virtual PCD 00 00", 35964 for
// "Virtual PCD 00 01"); a card emulator connects to it. Every message, both
// ways, is a 2-byte big-endian length and a payload. A payload of one byte is
// a control message (00 power off, 01 power on, 02 reset: no reply; 04 get
// ATR: reply with the ATR); anything longer is a command APDU, answered with
// the response APDU. The driver checks presence by asking for the ATR at
// every poll (~400 ms): an empty answer means "no card", and a connection
// that fails is a removed card.

// DefaultAddr is vpcd's first slot, reader "Virtual PCD 00 00".
const DefaultAddr = "127.0.0.1:35963"

// vpcd control messages.
const (
	vpcdPowerOff = 0x00
	vpcdPowerOn  = 0x01
	vpcdReset    = 0x02
	vpcdGetATR   = 0x04
)

// unplugGrace bounds how long Unplug waits for vpcd to notice the removal
// (one poll, normally) before it drops the connection anyway.
const unplugGrace = 10 * time.Second

// ErrClosed is returned by Replug after Close.
var ErrClosed = errors.New("virtual YubiKey transport closed")

// errAnnounced: the first presence poll was answered "no card"; vpcd drops
// such a connection (Debian's vsmartcard 0.8 stops reading it, newer ones
// close it), so the transport dials again.
var errAnnounced = errors.New("answered the first presence poll with no card")

// Plugged is a Card inserted in a vpcd reader.
type Plugged struct {
	card *Card
	addr string
	ctx  context.Context

	mu     sync.Mutex
	link   *link // nil when unplugged
	last   *link // the most recent insertion, for Ready and Err
	closed bool
}

// link is one insertion of the card: a connection to vpcd.
type link struct {
	mu       sync.Mutex
	conn     *net.TCPConn  // current connection (replaced once, after the "no card" answer)
	done     chan struct{} // closed when the server goroutine ends
	ready    chan struct{} // closed when pcscd can use the card (see Ready)
	removing atomic.Bool   // Unplug is under way
	err      error         // why the connection ended by itself; set before done closes
}

func (l *link) current() *net.TCPConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn
}

// Plug connects c to the vpcd reader at addr ("" means DefaultAddr) and
// serves it until Unplug, Close or the end of ctx. Ready tells when pcscd
// has powered the card (normally within two vpcd polls, under a second).
//
// The card answers vpcd's first presence poll with "no card" and only then
// with its ATR, so that pcscd always sees an empty slot before the card:
// without that, a card plugged in within one poll of the previous one's
// abrupt end (a killed test, a command that failed on a vanished card)
// would look to pcscd like the old card still in place, left in an error
// state and never powered again.
func Plug(ctx context.Context, addr string, c *Card) (*Plugged, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	p := &Plugged{card: c, addr: addr, ctx: ctx}
	if err := p.connect(); err != nil {
		return nil, err
	}
	return p, nil
}

// Card returns the plugged card.
func (p *Plugged) Card() *Card { return p.card }

// Addr returns the vpcd address.
func (p *Plugged) Addr() string { return p.addr }

// Ready is closed once pcscd has powered the card and read its ATR since the
// last Plug or Replug (or has polled it twice without powering it, which
// means it takes the card as powered already): from then on clients can
// connect to it.
func (p *Plugged) Ready() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last.ready
}

// Err reports why the last connection to vpcd ended, if it ended by itself
// (pcscd stopped, protocol error, end of the context) rather than by Unplug
// or Close; nil while it lasts.
func (p *Plugged) Err() error {
	p.mu.Lock()
	l := p.last
	p.mu.Unlock()
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

func (p *Plugged) connect() error {
	conn, err := p.dial()
	if err != nil {
		return err
	}
	l := &link{conn: conn, done: make(chan struct{}), ready: make(chan struct{})}
	p.mu.Lock()
	p.link, p.last = l, l
	p.mu.Unlock()
	go p.serve(l)
	return nil
}

func (p *Plugged) dial() (*net.TCPConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(p.ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("plugging virtual YubiKey into vpcd at %s (is pcscd running?): %w", p.addr, err)
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("plugging virtual YubiKey into vpcd at %s: not a TCP connection", p.addr)
	}
	return tc, nil
}

// Unplug pulls the card out. It stops answering, closes its side of the
// connection and waits (at most unplugGrace) until vpcd, at its next poll,
// has seen the card gone and hung up: when Unplug returns, pcscd is marking
// the card removed. An APDU in flight fails, as with a key pulled from its
// port. The card keeps its persistent state and loses its volatile state.
// Unplugging an unplugged card does nothing.
func (p *Plugged) Unplug() error {
	p.mu.Lock()
	l := p.link
	p.link = nil
	p.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	l.removing.Store(true)
	if err := l.conn.CloseWrite(); err != nil {
		_ = l.conn.Close()
	}
	l.mu.Unlock()
	<-l.done
	p.card.PowerOff()
	return nil
}

// Replug unplugs the card if needed and plugs it in again.
func (p *Plugged) Replug() error {
	if err := p.Unplug(); err != nil {
		return err
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return p.connect()
}

// Close unplugs the card for good.
func (p *Plugged) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return p.Unplug()
}

// serve answers vpcd on l until the connection ends.
func (p *Plugged) serve(l *link) {
	defer close(l.done)
	stop := context.AfterFunc(p.ctx, func() { _ = l.current().Close() })
	defer stop()
	err := p.exchange(l, l.conn, true)
	if errors.Is(err, errAnnounced) {
		_ = l.conn.Close()
		if l.removing.Load() {
			return // unplugged while pcscd saw an empty slot: nothing to wait for
		}
		var conn *net.TCPConn
		if conn, err = p.dial(); err == nil {
			l.mu.Lock()
			l.conn = conn
			if l.removing.Load() { // Unplug came in between
				_ = conn.CloseWrite()
			}
			l.mu.Unlock()
			if p.ctx.Err() != nil {
				_ = conn.Close()
			}
			err = p.exchange(l, conn, false)
		}
	}
	conn := l.current()
	if l.removing.Load() {
		// Unplugged: wait for vpcd to read our end of stream and hang up.
		_ = conn.SetReadDeadline(time.Now().Add(unplugGrace))
		_, _ = io.Copy(io.Discard, conn)
		_ = conn.Close()
		return
	}
	if errors.Is(err, net.ErrClosed) && p.ctx.Err() != nil {
		err = p.ctx.Err()
	}
	l.err = err
	p.card.logf("virtual YubiKey %d: vpcd connection %s ended: %v", p.card.Serial(), p.addr, err)
	_ = conn.Close()
	p.card.PowerOff()
}

// ackingReader acknowledges every read at once (see quickAck).
type ackingReader struct{ conn net.Conn }

func (r ackingReader) Read(b []byte) (int, error) {
	n, err := r.conn.Read(b)
	quickAck(r.conn)
	return n, err
}

// exchange reads vpcd's messages on conn and answers them until the
// connection ends or the card is being unplugged. With announceAbsence, the
// first presence poll is answered "no card".
func (p *Plugged) exchange(l *link, conn *net.TCPConn, announceAbsence bool) error {
	var hdr [2]byte
	// Readiness: pcscd powers a card it sees inserted (01) and reads the
	// ATR (04). A second ATR poll without a power-on means pcscd takes the
	// card as powered already.
	powered, polls := false, 0
	r := ackingReader{conn}
	quickAck(conn)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("vpcd closed the connection")
			}
			return fmt.Errorf("reading from vpcd: %w", err)
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(r, msg); err != nil {
			return fmt.Errorf("reading a %d-byte message from vpcd: %w", len(msg), err)
		}
		if l.removing.Load() {
			return nil
		}
		var reply []byte
		if len(msg) == 1 {
			switch msg[0] {
			case vpcdPowerOff:
				p.card.PowerOff()
				continue
			case vpcdPowerOn:
				p.card.PowerOn()
				powered = true
				continue
			case vpcdReset:
				p.card.WarmReset()
				powered = true
				continue
			case vpcdGetATR:
				if announceAbsence {
					if _, err := conn.Write([]byte{0x00, 0x00}); err != nil {
						return fmt.Errorf("writing to vpcd: %w", err)
					}
					return errAnnounced
				}
				reply = p.card.ATR()
				if polls++; powered || polls >= 2 {
					select {
					case <-l.ready:
					default:
						close(l.ready)
					}
				}
			default:
				return fmt.Errorf("unknown vpcd control message %#02x", msg[0])
			}
		} else {
			reply = p.card.APDU(msg)
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reply)), uint16(len(reply)))
		if _, err := conn.Write(append(out, reply...)); err != nil {
			return fmt.Errorf("writing to vpcd: %w", err)
		}
	}
}

// Package simline is the serial line the simulators share: a UART's pace at a modelled baud
// rate, and the pty plumbing (raw mode, the line rate the harness set, poller-backed files). It
// belongs to the simulators only; the drivers they test never import it.
package simline

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Pacer models one direction of a UART: a byte occupies the line for 10 bit
// times (8N1), so the next byte cannot start before the previous one ended.
// Not safe for concurrent use; each direction has its own.
type Pacer struct {
	byteTime time.Duration // 0: unlimited
	free     time.Time     // when the line finishes what it has been given
}

// NewPacer paces a line at baud; baud <= 0 is a line without a rate limit.
func NewPacer(baud int) Pacer {
	if baud <= 0 {
		return Pacer{}
	}
	return Pacer{byteTime: 10 * time.Second / time.Duration(baud)}
}

// Transmit blocks until n more bytes have crossed the line: the receiver
// sees a chunk once its last byte has arrived, as with a real UART FIFO. A
// line that has been idle starts now.
func (p *Pacer) Transmit(n int) {
	if p.byteTime == 0 {
		return
	}
	if now := time.Now(); p.free.Before(now) {
		p.free = now // the line was idle
	}
	p.Continue(n)
}

// Continue is Transmit for bytes that follow the previous ones back to back
// (the rest of one write): the line was busy all along, so they start where
// the previous bytes ended even if this call comes late. Transmit would take
// the late call for an idle line and add each chunk's wake-up delay to the
// line time.
func (p *Pacer) Continue(n int) {
	if p.byteTime == 0 {
		return
	}
	p.free = p.free.Add(time.Duration(n) * p.byteTime)
	lineSleep(p.free)
}

// spinFor is the end of a line wait spent polling the clock instead of asleep: a thread woken
// from nanosleep runs tens of microseconds late, as much as a YMODEM ACK's whole line time at
// 921600 baud (11 us), and 1 ms ticks are a tenth of a block's.
const spinFor = 100 * time.Microsecond

// lineSleep blocks the thread until the line is free at until: in nanosleep (runtime timers
// wake 0.1-0.2 ms late, the netpoller waits in whole milliseconds), then polling the clock for
// the last spinFor. It blocks only this direction's pump, which waits for the line anyway.
func lineSleep(until time.Time) {
	if d := time.Until(until) - spinFor; d > 0 {
		// The thread's timer slack (50 us by default) would make every sleep that much longer.
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		ts := unix.NsecToTimespec(int64(d))
		for unix.Nanosleep(&ts, &ts) == unix.EINTR {
		}
	}
	for time.Now().Before(until) {
	}
}

// ChunkSize is how many bytes to move at once so that each move is about d of line time: pacing
// is smooth without a syscall per byte. Without a rate limit it is 4096.
func ChunkSize(baud int, d time.Duration) int {
	if baud <= 0 {
		return 4096
	}
	return max(1, int(int64(baud/10)*int64(d)/int64(time.Second)))
}

// speedCodes maps line rates to termios CBAUD codes.
var speedCodes = map[int]uint32{
	1200: unix.B1200, 2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600,
	19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800,
	500000: unix.B500000, 576000: unix.B576000, 921600: unix.B921600,
	1000000: unix.B1000000, 1152000: unix.B1152000, 1500000: unix.B1500000,
	2000000: unix.B2000000, 3000000: unix.B3000000, 4000000: unix.B4000000,
}

// PortSpeed reads the line rate a pty slave is set to, the way the harness
// set it with tcsetattr. ok is false if it cannot tell.
func PortSpeed(f *os.File) (baud int, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	var t *unix.Termios
	cerr := rc.Control(func(fd uintptr) {
		t, err = unix.IoctlGetTermios(int(fd), unix.TCGETS2)
	})
	if cerr != nil || err != nil {
		return 0, false
	}
	code := t.Cflag & unix.CBAUD
	if code == unix.BOTHER {
		return int(t.Ospeed), true
	}
	for rate, c := range speedCodes {
		if c == code {
			return rate, true
		}
	}
	return 0, false
}

// MakeRaw puts a pty slave into raw mode (cfmakeraw) at baud (baud <= 0 leaves the rate as it
// is). Raw matters: with the default ECHO the pty would loop the device's output back into it
// before the harness has opened and configured the port.
func MakeRaw(f *os.File, baud int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("setting raw mode: %w", err)
	}
	var ierr error
	cerr := rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS2)
		if err != nil {
			ierr = err
			return
		}
		// cfmakeraw(3)
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		if baud > 0 {
			t.Cflag &^= unix.CBAUD | (unix.CBAUD << unix.IBSHIFT)
			if code, ok := speedCodes[baud]; ok {
				t.Cflag |= code
			} else {
				t.Cflag |= unix.BOTHER
			}
			t.Ispeed, t.Ospeed = uint32(baud), uint32(baud)
		}
		ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS2, t)
	})
	if cerr != nil {
		ierr = cerr
	}
	if ierr != nil {
		return fmt.Errorf("setting raw mode: %w", ierr)
	}
	return nil
}

// Pollable returns f as a non-blocking, poller-backed file and closes f.
// creack/pty hands out blocking files (it calls Fd()), on which Close does
// not interrupt a pending Read and deadlines do not work.
func Pollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("pollable %s: %w", f.Name(), err)
	}
	nfd := -1
	var derr error
	if cerr := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); cerr != nil {
		derr = cerr
	}
	name := f.Name()
	f.Close()
	if derr != nil {
		return nil, fmt.Errorf("pollable %s: %w", name, derr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("pollable %s: %w", name, err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

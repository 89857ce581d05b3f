package sim

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer models one direction of a UART (8N1: 10 bit times a byte).
type pacer struct {
	byteTime time.Duration // 0: unlimited
	free     time.Time     // when the line has sent what it was given
}

func newPacer(baud int) pacer {
	if baud <= 0 {
		return pacer{}
	}
	return pacer{byteTime: 10 * time.Second / time.Duration(baud)}
}

// transmit blocks until n more bytes have crossed the line.
func (p *pacer) transmit(n int) {
	if p.byteTime == 0 {
		return
	}
	now := time.Now()
	if p.free.Before(now) {
		p.free = now
	}
	p.free = p.free.Add(time.Duration(n) * p.byteTime)
	if d := time.Until(p.free); d > 0 {
		// nanosleep: runtime timers wake a tenth of a millisecond late.
		ts := unix.NsecToTimespec(int64(d))
		for unix.Nanosleep(&ts, &ts) == unix.EINTR {
		}
	}
}

// chunkSize moves about 5 ms of line time at once.
func chunkSize(baud int) int {
	if baud <= 0 {
		return 4096
	}
	return max(1, baud/10/200)
}

// pollable re-opens f non-blocking under the runtime poller, so that Close ends a blocked Read
// and write deadlines work.
func pollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, derr := -1, error(nil)
	if cerr := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
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

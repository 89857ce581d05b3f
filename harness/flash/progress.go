package flash

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// barRedraw is the least time between two redraws on a terminal.
const barRedraw = 100 * time.Millisecond

// Bar draws `label [#####.....] 45% 123.4 KiB/s`. On a terminal it redraws
// one line (\r) at most every 100 ms; elsewhere (CI logs) it prints one
// line per 10 % step. Its methods are safe for concurrent use.
type Bar struct {
	w     io.Writer
	label string
	total int64
	tty   bool
	now   func() time.Time // tests replace it

	mu       sync.Mutex
	start    time.Time
	n        int64
	lastDraw time.Time
	lastTen  int64 // last 10 % step printed (not a terminal)
	finished bool
}

// NewBar starts a bar for total bytes.
func NewBar(w io.Writer, label string, total int64) *Bar {
	b := &Bar{w: w, label: label, total: total, tty: isTerminal(w), now: time.Now, lastTen: -1}
	b.start = b.now()
	return b
}

// Update sets the bytes done so far (a Progress callback can call it).
func (b *Bar) Update(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.n = n
	now := b.now()
	if b.tty {
		if !b.lastDraw.IsZero() && now.Sub(b.lastDraw) < barRedraw {
			return
		}
		b.lastDraw = now
		fmt.Fprintf(b.w, "\r%s", b.line(now))
		return
	}
	if ten := b.percent() / 10; ten > b.lastTen {
		b.lastTen = ten
		fmt.Fprintln(b.w, b.line(now))
	}
}

// Finish prints the final line with the overall throughput.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	now := b.now()
	prefix := ""
	if b.tty {
		prefix = "\r"
	}
	fmt.Fprintf(b.w, "%s%s, %d bytes in %s\n", prefix, b.line(now), b.n, now.Sub(b.start).Round(time.Millisecond))
}

func (b *Bar) percent() int64 {
	if b.total <= 0 {
		return 100
	}
	return min(100, max(0, b.n*100/b.total))
}

func (b *Bar) line(now time.Time) string {
	const width = 30
	p := b.percent()
	done := int(p * width / 100)
	rate := 0.0
	if secs := now.Sub(b.start).Seconds(); secs > 0 {
		rate = float64(b.n) / secs
	}
	return fmt.Sprintf("%s [%s%s] %3d%% %s", b.label,
		strings.Repeat("#", done), strings.Repeat(".", width-done), p, FormatRate(rate))
}

// FormatRate writes bytes per second with a binary unit: "123.4 KiB/s".
func FormatRate(bps float64) string {
	units := []string{"B/s", "KiB/s", "MiB/s", "GiB/s"}
	i := 0
	for bps >= 1024 && i < len(units)-1 {
		bps /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", bps, units[i])
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	// SyscallConn, not Fd: Fd would turn off deadlines on f.
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		_, ioctlErr = unix.IoctlGetTermios(int(fd), unix.TCGETS)
	}); err != nil {
		return false
	}
	return ioctlErr == nil
}

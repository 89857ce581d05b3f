package sim

import (
	"bytes"
	"sync"
	"time"
)

// busyClock measures the device's own processing time, which no harness can take away: from a
// line's end reaching the shell to the shell's next prompt (busybox's cursor query, ESC[6n,
// right after it). The shell's output is read as it is written (pumpOut), so the line's pace does
// not stretch it. Output sent while a command still runs overlaps it (a Shell command's begin
// marker: a few bytes); lines typed ahead are counted from the first one's end to the first
// prompt only, which errs on the side of less device time.
type busyClock struct {
	mu    sync.Mutex
	since time.Time // zero: idle
	total time.Duration
}

// lineIn notes input delivered to the shell; a line end starts the clock.
func (b *busyClock) lineIn(p []byte) {
	if !bytes.ContainsAny(p, "\r\n") {
		return
	}
	b.mu.Lock()
	if b.since.IsZero() {
		b.since = time.Now()
	}
	b.mu.Unlock()
}

// prompt stops the clock: the shell waits for input again.
func (b *busyClock) prompt() {
	b.mu.Lock()
	if !b.since.IsZero() {
		b.total += time.Since(b.since)
		b.since = time.Time{}
	}
	b.mu.Unlock()
}

// stop drops a running interval: the shell is gone (reboot, power cut) and prints no prompt.
func (b *busyClock) stop() {
	b.mu.Lock()
	b.since = time.Time{}
	b.mu.Unlock()
}

func (b *busyClock) read() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// cursorQuery is what busybox's line editor sends after each prompt.
const cursorQuery = "\x1b[6n"

// promptSeen reports whether p, after the tail of the previous read, holds a cursor query, and
// keeps the new tail.
func promptSeen(tail *[]byte, p []byte) bool {
	buf := append(*tail, p...)
	found := bytes.Contains(buf, []byte(cursorQuery))
	keep := min(len(buf), len(cursorQuery)-1)
	*tail = append((*tail)[:0], buf[len(buf)-keep:]...)
	return found
}

// ProcessingTime is how long the device's shell has worked on the lines it was sent since Start:
// the device's share of a provisioning's time, which benchmarks take out of the wall time along
// with the line's.
func (d *Device) ProcessingTime() time.Duration { return d.busy.read() }

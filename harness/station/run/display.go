package run

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"hilbench/harness/station/web"
)

// Display is the terminal mode of a headless station: on a terminal one line per slot,
// redrawn in place (cursor up, clear line); otherwise a plain line whenever a slot's state,
// phase or DUT changes, so a log file reads as a history.
type Display struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu    sync.Mutex
	drawn int               // lines drawn last time (TTY)
	last  map[string]string // per slot, the last line printed (plain)
}

// NewDisplay writes to w; tty says whether w is a terminal.
func NewDisplay(w io.Writer, tty bool) *Display {
	return &Display{w: w, tty: tty, now: time.Now, last: map[string]string{}}
}

// Line is one slot's line.
func Line(s web.SlotState, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-8s", s.Name, strings.ToUpper(s.State))
	if s.DUT != "" {
		fmt.Fprintf(&b, " %-14s", s.DUT)
	}
	switch s.State {
	case web.StateRunning, web.StateStopping:
		fmt.Fprintf(&b, " %-14s %s", s.Phase, now.Sub(s.Started).Round(time.Second))
	case web.StateFail, web.StateError, web.StateAborted:
		fmt.Fprintf(&b, " %s: %s", s.FailedPhase, firstLine(s.Message, 100))
	case web.StatePass:
		fmt.Fprintf(&b, " %s", s.Ended.Sub(s.Started).Round(100*time.Millisecond))
	}
	return b.String()
}

func firstLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// Show draws a snapshot.
func (d *Display) Show(sn web.Snapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if !d.tty {
		for _, s := range sn.Slots {
			// Elapsed time changes every second: the plain log prints on real changes only.
			key := s.State + "|" + s.DUT + "|" + s.Phase + "|" + s.RecordID
			if d.last[s.Name] == key {
				continue
			}
			d.last[s.Name] = key
			fmt.Fprintf(d.w, "%s %s\n", now.UTC().Format("15:04:05"), Line(s, now))
		}
		return
	}
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn)
	}
	for _, s := range sn.Slots {
		b.WriteString("\r\x1b[2K" + Line(s, now) + "\n")
	}
	c := sn.Counters
	fmt.Fprintf(&b, "\r\x1b[2K%s  operator %s  passed %d  failed %d  errors %d  aborted %d  yield %.1f%%  %.0f DUTs/h\n",
		sn.Station, orDash(sn.Operator), c.Passed, c.Failed, c.Errors, c.Aborted, 100*c.Yield, c.DUTsPerHour)
	d.drawn = len(sn.Slots) + 1
	io.WriteString(d.w, b.String())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package simline

import (
	"testing"
	"time"
)

func TestPacerLowerBound(t *testing.T) {
	p := NewPacer(9600)
	start := time.Now()
	for range 12 {
		p.Transmit(8) // 96 bytes at 960 B/s: 100 ms
	}
	if el := time.Since(start); el < 95*time.Millisecond {
		t.Errorf("96 bytes at 9600 baud took %v, the line cannot be that fast", el)
	}
	for _, c := range []struct {
		baud int
		d    time.Duration
		want int
	}{{115200, 10 * time.Millisecond, 115}, {115200, 5 * time.Millisecond, 57}, {0, time.Millisecond, 4096}, {300, 10 * time.Millisecond, 1}} {
		if got := ChunkSize(c.baud, c.d); got != c.want {
			t.Errorf("ChunkSize(%d, %v) = %d, want %d", c.baud, c.d, got, c.want)
		}
	}
}

// Continue keeps one write's chunks back to back: a late call does not restart the line, so the
// chunks take their line time and no more (Transmit per chunk would add each wake-up's delay).
func TestPacerContinueDoesNotRestartTheLine(t *testing.T) {
	p := NewPacer(115200) // 11520 B/s: 115 bytes are 10 ms
	start := time.Now()
	p.Transmit(115)
	time.Sleep(3 * time.Millisecond) // the caller is late for the next chunk
	p.Continue(115)
	if el := time.Since(start); el < 19*time.Millisecond {
		t.Errorf("230 bytes at 115200 baud took %v, the line cannot be that fast", el)
	}
	if want := start.Add(2 * 115 * p.byteTime); p.free.Sub(want).Abs() > 2*time.Millisecond {
		t.Errorf("the line is free at +%v, want +%v: Continue restarted it", p.free.Sub(start), want.Sub(start))
	}
	q := NewPacer(115200)
	q.Transmit(115)
	time.Sleep(3 * time.Millisecond)
	before := time.Now()
	q.Transmit(115) // an idle line restarts at now
	if q.free.Before(before.Add(115 * q.byteTime)) {
		t.Errorf("Transmit after an idle gap: free at %v, before now + the chunk's line time", q.free)
	}
}

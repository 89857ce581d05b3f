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

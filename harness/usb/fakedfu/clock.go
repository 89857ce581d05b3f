package fakedfu

import (
	"context"
	"sync"
	"time"
)

// SimClock is simulated time: Sleep advances it at once and records the wait. Give the same
// clock to the fake and to the code under test so the fake can tell an early poll.
type SimClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

// NewSimClock starts simulated time at a fixed instant.
func NewSimClock() *SimClock {
	return &SimClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now is the simulated time.
func (c *SimClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances simulated time by d.
func (c *SimClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	if d > 0 {
		c.now = c.now.Add(d)
	}
	return nil
}

// Sleeps are the waits asked of the clock, in order.
func (c *SimClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// wallClock is real time for the real-time mode.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Package benchpower opens a bench target's power control when a driver first needs it (a
// provisioning recovery, a flash by boot strap, a power cycle) and not before: a usb-hub backend
// holds USB handles, and most runs never switch anything.
package benchpower

import (
	"context"
	"sync"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/power"
)

// Lazy is a target's power control, opened on first use.
type Lazy struct {
	t *bench.Target

	mu  sync.Mutex
	pw  power.Power
	err error
}

// For returns the target's power control, or nil when its bench entry has no power section.
// The configuration is checked now, so a bad power section fails at open.
func For(t *bench.Target) (*Lazy, error) {
	if t.Power == nil {
		return nil, nil
	}
	if _, err := power.ConfigFromBench(t); err != nil {
		return nil, err
	}
	return &Lazy{t: t}, nil
}

// Get opens the power control once.
func (l *Lazy) Get() (power.Power, error) {
	if l == nil {
		return nil, device.ErrUnsupported
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pw == nil && l.err == nil {
		l.pw, l.err = power.ForTarget(l.t)
	}
	return l.pw, l.err
}

// Cycle is off, the configured off time, on.
func (l *Lazy) Cycle(ctx context.Context) error {
	pw, err := l.Get()
	if err != nil {
		return err
	}
	return pw.Cycle(ctx)
}

// Close releases what an opened backend holds.
func (l *Lazy) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pw == nil {
		return nil
	}
	err := power.Close(l.pw)
	l.pw = nil
	return err
}

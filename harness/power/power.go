// Package power switches a device under test on and off: relay boards and PDUs through
// external commands, the simulators' power socket, and USB hub per-port power.
package power

import (
	"context"
	"fmt"
	"time"
)

// State is what a switch reports.
type State int

// States.
const (
	Unknown State = iota
	On
	Off
)

func (s State) String() string {
	switch s {
	case On:
		return "on"
	case Off:
		return "off"
	}
	return "unknown"
}

// Power is one switched supply.
type Power interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	// Cycle is off, a wait of the configured off time, on.
	Cycle(ctx context.Context) error
	State(ctx context.Context) (State, error)
}

// Defaults.
const (
	DefaultOffTime = 2 * time.Second // as uhubctl's cycle delay
	DefaultTimeout = 10 * time.Second
)

// Config selects and sets up a backend; the bench file maps onto it.
type Config struct {
	Type                  string // "command", "sim", "usb-hub"
	On, Off, Cycle, State string // command templates; {port} and {target} are substituted
	OnPattern, OffPattern string // regexps matched against the State command's output
	Port                  int    // relay channel or hub port
	Target                string
	Socket                string // sim: the simulator's power socket
	Hub                   string // usb-hub: uhubctl-style location, e.g. "1-1.4"
	OffTime               time.Duration
	Timeout               time.Duration
}

// Open makes the backend cfg.Type names. A usb-hub backend holds USB handles: close it
// through io.Closer when done.
func Open(cfg Config) (Power, error) {
	if cfg.OffTime == 0 {
		cfg.OffTime = DefaultOffTime
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.OffTime < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("power: negative off time %v or timeout %v", cfg.OffTime, cfg.Timeout)
	}
	switch cfg.Type {
	case "command":
		return NewCommand(cfg)
	case "sim":
		return NewSim(cfg)
	case "usb-hub":
		return OpenUSBHub(cfg)
	}
	return nil, fmt.Errorf("power: unknown type %q (want command, sim or usb-hub)", cfg.Type)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package power

import (
	"fmt"
	"io"

	"hilbench/harness/bench"
)

// ConfigFromBench maps a bench target's power section onto Config.
func ConfigFromBench(t *bench.Target) (Config, error) {
	p := t.Power
	if p == nil {
		return Config{}, fmt.Errorf("target %s has no power section in the bench file", t.Name)
	}
	return Config{
		Type: p.Type, On: p.On, Off: p.Off, Cycle: p.Cycle, State: p.State,
		OnPattern: p.OnPattern, OffPattern: p.OffPattern, Port: p.Port, Target: t.Name,
		Socket: p.Socket, Hub: p.Hub, OffTime: p.OffTime, Timeout: p.Timeout,
	}, nil
}

// ForTarget opens a bench target's power control. Release it with Close.
func ForTarget(t *bench.Target) (Power, error) {
	cfg, err := ConfigFromBench(t)
	if err != nil {
		return nil, err
	}
	pw, err := Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("target %s: power: %w", t.Name, err)
	}
	return pw, nil
}

// Close releases what a backend holds (a usb-hub backend holds USB handles); the others hold
// nothing and Close does nothing for them.
func Close(p Power) error {
	if c, ok := p.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

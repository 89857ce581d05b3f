package fakedfu

import (
	"context"
	"errors"
	"testing"
	"time"

	"hilbench/harness/usb"
)

// The fake must catch host mistakes, or the protocol tests prove nothing.
func TestFakeCatchesHostMistakes(t *testing.T) {
	status := make([]byte, 6)
	for _, tc := range []struct {
		name string
		run  func(d *Device, c *SimClock)
	}{
		{"DNLOAD while busy", func(d *Device, c *SimClock) {
			d.Control(0x21, 1, 0, 0, []byte{1})
			d.Control(0xA1, 3, 0, 0, status) // -> dfuDNBUSY
			d.Control(0x21, 1, 1, 0, []byte{2})
		}},
		{"block number skipped", func(d *Device, c *SimClock) {
			d.Control(0x21, 1, 0, 0, []byte{1})
			d.Control(0xA1, 3, 0, 0, status)
			c.Sleep(context.Background(), 5*time.Millisecond)
			d.Control(0xA1, 3, 0, 0, status) // -> dfuDNLOAD-IDLE
			d.Control(0x21, 1, 2, 0, []byte{2})
		}},
		{"CLRSTATUS without an error", func(d *Device, c *SimClock) { d.Control(0x21, 4, 0, 0, nil) }},
		{"wrong interface", func(d *Device, c *SimClock) { d.Control(0xA1, 3, 0, 1, status) }},
		{"block larger than wTransferSize", func(d *Device, c *SimClock) { d.Control(0x21, 1, 0, 0, make([]byte, 1025)) }},
		{"zero-length DNLOAD in dfuIDLE", func(d *Device, c *SimClock) { d.Control(0x21, 1, 0, 0, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewSimClock()
			d, err := New(Config{ProgramTime: 5 * time.Millisecond, Clock: c})
			if err != nil {
				t.Fatal(err)
			}
			tc.run(d, c)
			if s := d.Stats(); len(s.Violations) != 1 {
				t.Fatalf("violations %q, want one", s.Violations)
			}
			if d.State() != dfuError {
				t.Fatalf("state %d, want dfuERROR", d.State())
			}
		})
	}
}

func TestFakeCountsEarlyPolls(t *testing.T) {
	c := NewSimClock()
	d, err := New(Config{ProgramTime: 5 * time.Millisecond, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	status := make([]byte, 6)
	d.Control(0x21, 1, 0, 0, []byte{1})
	d.Control(0xA1, 3, 0, 0, status)
	c.Sleep(context.Background(), 4*time.Millisecond)
	d.Control(0xA1, 3, 0, 0, status)
	if s := d.Stats(); s.EarlyPolls != 1 || status[4] != dnBusy {
		t.Fatalf("early polls %d, state %d", s.EarlyPolls, status[4])
	}
	c.Sleep(context.Background(), time.Millisecond)
	d.Control(0xA1, 3, 0, 0, status)
	if status[4] != dnloadIdle {
		t.Fatalf("state %d after the program time", status[4])
	}
}

func TestFakeGone(t *testing.T) {
	d, err := New(Config{GoneAfterBlock: 1})
	if err != nil {
		t.Fatal(err)
	}
	status := make([]byte, 6)
	d.Control(0x21, 1, 0, 0, []byte{1})
	if _, err := d.Control(0xA1, 3, 0, 0, status); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Control(0x21, 1, 1, 0, []byte{2}); !errors.Is(err, usb.ErrDeviceGone) {
		t.Fatalf("after block 1: %v", err)
	}
	if err := d.Reset(); !errors.Is(err, usb.ErrDeviceGone) {
		t.Fatalf("reset: %v", err)
	}
}

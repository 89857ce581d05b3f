package usb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/gousb"
)

// Match picks a USB device by vendor and product ID and, when not empty, serial number.
type Match struct {
	Vendor, Product uint16
	Serial          string
}

func (m Match) String() string {
	s := fmt.Sprintf("%04x:%04x", m.Vendor, m.Product)
	if m.Serial != "" {
		s += " serial " + m.Serial
	}
	return s
}

// USBDevice is a device opened through gousb (libusb). It implements Device.
type USBDevice struct {
	dev  *gousb.Device
	cfg  *gousb.Config
	intf *gousb.Interface
}

// ErrNotFound is no device matching.
var ErrNotFound = errors.New("usb: no matching device")

// Open opens the first device that matches m.
func Open(ctx *gousb.Context, m Match) (*USBDevice, error) {
	devs, err := ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		return uint16(d.Vendor) == m.Vendor && uint16(d.Product) == m.Product
	})
	var found *gousb.Device
	for _, d := range devs {
		if found == nil && (m.Serial == "" || serialIs(d, m.Serial)) {
			found = d
			continue
		}
		d.Close()
	}
	if found == nil {
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", m, err)
		}
		return nil, fmt.Errorf("open %s: %w", m, ErrNotFound)
	}
	found.ControlTimeout = ControlTimeout
	return &USBDevice{dev: found}, nil
}

// ControlTimeout bounds each control transfer of a device opened here: a device that never
// answers fails the transfer rather than hanging the harness.
var ControlTimeout = 5 * time.Second

// Wrap adapts a device opened elsewhere with gousb (hubs, for instance).
func Wrap(dev *gousb.Device) *USBDevice {
	dev.ControlTimeout = ControlTimeout
	return &USBDevice{dev: dev}
}

func serialIs(d *gousb.Device, want string) bool {
	s, err := d.SerialNumber()
	return err == nil && s == want
}

// Reopen polls for a device matching m until it appears (it re-enumerates after a detach or
// a reset, often with another product ID) or timeout passes.
func Reopen(ctx context.Context, uctx *gousb.Context, m Match, timeout time.Duration) (*USBDevice, error) {
	deadline := time.Now().Add(timeout)
	for {
		d, err := Open(uctx, m)
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not come back within %v: %w", m, timeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Control is a control transfer; a STALL is ErrStall, a vanished device ErrDeviceGone.
func (d *USBDevice) Control(rType, request uint8, val, idx uint16, data []byte) (int, error) {
	n, err := d.dev.Control(rType, request, val, idx, data)
	return n, mapError(err)
}

func mapError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gousb.ErrorPipe):
		return fmt.Errorf("%w (%v)", ErrStall, err)
	case errors.Is(err, gousb.ErrorNoDevice):
		return fmt.Errorf("%w (%v)", ErrDeviceGone, err)
	}
	return err
}

// Reset is a USB port reset.
func (d *USBDevice) Reset() error { return mapError(d.dev.Reset()) }

// Claim claims iface and selects its alt setting (detaching a kernel driver if needed).
func (d *USBDevice) Claim(iface Interface) error {
	d.release()
	if err := d.dev.SetAutoDetach(true); err != nil {
		return fmt.Errorf("claim %s: %w", iface, err)
	}
	cfg, err := d.dev.Config(int(iface.Config))
	if err != nil {
		return fmt.Errorf("claim %s: %w", iface, mapError(err))
	}
	intf, err := cfg.Interface(int(iface.Number), int(iface.Alt))
	if err != nil {
		cfg.Close()
		return fmt.Errorf("claim %s: %w", iface, mapError(err))
	}
	d.cfg, d.intf = cfg, intf
	return nil
}

func (d *USBDevice) release() {
	if d.intf != nil {
		d.intf.Close()
		d.intf = nil
	}
	if d.cfg != nil {
		d.cfg.Close()
		d.cfg = nil
	}
}

// Close releases the interface and closes the device.
func (d *USBDevice) Close() error {
	d.release()
	return d.dev.Close()
}

// Interfaces lists the device's DFU interfaces (read over control transfers).
func (d *USBDevice) Interfaces() ([]Interface, error) { return FindInterfaces(d) }

package sim

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// A new board in the same slot: `hil sim --feed` presents one device after another on one port,
// as an operator swaps boards in a test fixture. The port (and the simulator) stay; everything
// that belongs to the board goes.

// ErrPoweredOn: Replace needs the slot's power off (nobody swaps a powered board).
var ErrPoweredOn = errors.New("sim: device is powered on")

// writeSerial programs the board's serial number ("" erases it).
func (l layout) writeSerial(serial string) error {
	if serial == "" {
		if err := os.Remove(l.serial); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return writeFileAtomic(l.serial, []byte(serial+"\n"), 0o644)
}

// Replace puts a fresh board with the given serial number where the old one was: its storage
// (dha/, data/, tmp/), its firmware slots (back to Config.Firmware) and its faults are new. The
// device must be off; it stays off until PowerOn (the board's insertion).
func (d *Device) Replace(serial string) error {
	for _, r := range serial {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("sim: serial %q: printable ASCII without spaces only", serial)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.powered {
		return ErrPoweredOn
	}
	for _, dir := range []string{d.l.dha, d.l.data, d.l.tmp, d.l.faults} {
		if err := emptyDir(dir); err != nil {
			return fmt.Errorf("sim: replacing %s: %w", d.cfg.Name, err)
		}
	}
	if err := os.RemoveAll(d.l.fw); err != nil {
		return fmt.Errorf("sim: replacing %s: %w", d.cfg.Name, err)
	}
	if err := d.l.installFirmware(d.cfg.Firmware); err != nil {
		return fmt.Errorf("sim: replacing %s: %w", d.cfg.Name, err)
	}
	if err := d.l.writeSerial(serial); err != nil {
		return fmt.Errorf("sim: replacing %s: %w", d.cfg.Name, err)
	}
	d.logf("%s: new board, serial %s", d.cfg.Name, serial)
	return nil
}

// Serial is the serial number of the board in the slot now ("" when none is programmed).
func (d *Device) Serial() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, err := os.ReadFile(d.l.serial)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

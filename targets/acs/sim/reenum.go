package sim

import (
	"fmt"
	"os"

	"github.com/creack/pty"

	"hilbench/targets/simline"
)

// Reenumerate simulates the USB-serial adapter dropping off the bus and coming back under a new
// device node, as /dev/ttyUSB0 comes back as /dev/ttyUSB1: the pseudo-terminal the harness has
// open is hung up (its reads and writes fail), a new one takes its place, and the device's
// stable port name (PortPath, standing for /dev/serial/by-id/...) moves to it. The board itself
// keeps running; bytes on the line during the swap are lost.
func (d *Device) Reenumerate() error {
	d.txMu.Lock() // no sender writes to the old master while it goes
	defer d.txMu.Unlock()
	select {
	case <-d.done:
		return ErrClosed
	default:
	}
	am, as, err := pty.Open()
	if err != nil {
		return fmt.Errorf("sim: re-enumerating %s: %w", d.cfg.Name, err)
	}
	fail := func(err error) error {
		am.Close()
		as.Close()
		return fmt.Errorf("sim: re-enumerating %s: %w", d.cfg.Name, err)
	}
	if am, err = simline.Pollable(am); err != nil {
		return fail(err)
	}
	if as, err = simline.Pollable(as); err != nil {
		return fail(err)
	}
	if err := simline.MakeRaw(as, d.cfg.Baud); err != nil {
		return fail(err)
	}
	d.mu.Lock()
	oldM, oldS := d.am, d.as
	d.am, d.as, d.portName = am, as, as.Name()
	d.mu.Unlock()
	if err := linkAtomic(as.Name(), d.l.tty); err != nil {
		d.fail(err)
	}
	// Closing the old master hangs up the harness's side; pumpIn moves on to the new master.
	oldM.Close()
	oldS.Close()
	d.logf("%s: re-enumerated: port %s (was %s)", d.cfg.Name, as.Name(), oldS.Name())
	return nil
}

// master is the pty master in use now.
func (d *Device) master() *os.File {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.am
}

package sim

import (
	"errors"
	"fmt"
	"os"

	"github.com/creack/pty"

	"hilbench/targets/simline"
)

// Reenumerate simulates the USB-serial adapter dropping off the bus and coming back under a new
// device node: the pseudo-terminal the harness has open is hung up, a new one takes its place
// and PortPath (standing for /dev/serial/by-id/...) moves to it. The module keeps running;
// bytes on the line during the swap are lost.
func (m *Module) Reenumerate() error {
	m.txMu.Lock() // no sender writes to the old master while it goes
	defer m.txMu.Unlock()
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return errors.New("ack sim: closed")
	}
	am, as, err := pty.Open()
	if err != nil {
		return fmt.Errorf("ack sim %s: re-enumerating: %w", m.cfg.Name, err)
	}
	fail := func(err error) error {
		am.Close()
		as.Close()
		return fmt.Errorf("ack sim %s: re-enumerating: %w", m.cfg.Name, err)
	}
	if am, err = simline.Pollable(am); err != nil {
		return fail(err)
	}
	if err := simline.MakeRaw(as, 0); err != nil {
		return fail(err)
	}
	m.mu.Lock()
	oldM, oldS := m.am, m.as
	m.am, m.as, m.portName = am, as, as.Name()
	m.mu.Unlock()
	tmp := m.PortPath() + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(as.Name(), tmp); err == nil {
		err = os.Rename(tmp, m.PortPath())
		if err != nil {
			m.logf("re-enumerating: %v", err)
		}
	} else {
		m.logf("re-enumerating: %v", err)
	}
	// Closing the old master hangs up the harness's side; pumpIn moves on to the new master.
	oldM.Close()
	oldS.Close()
	m.logf("re-enumerated: port %s (was %s)", as.Name(), oldS.Name())
	return nil
}

// master is the pty master in use now.
func (m *Module) master() *os.File {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.am
}

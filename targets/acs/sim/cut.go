package sim

import (
	"fmt"
	"time"

	"hilbench/targets/simpower"
)

// Power cut phases of an ACS device: what the harness sends it.
const (
	// CutUpload counts bytes typed into the console shell (the chain file, commands).
	CutUpload = simpower.PhaseUpload
	// CutFlash counts firmware bytes the boot ROM receives (YMODEM).
	CutFlash = simpower.PhaseFlash
	// CutAny counts every byte the device receives while on.
	CutAny = simpower.PhaseAny
)

// PowerCut cuts the power once, at byte AtByte (counted from arming) of what the device receives
// in Phase; the byte itself is lost with the power. RestoreAfter > 0 switches it back on then.
type PowerCut struct {
	Phase        string
	AtByte       int
	RestoreAfter time.Duration
}

// armedCut is a PowerCut on its way: left counts down the bytes still to receive.
type armedCut struct {
	PowerCut
	left int
}

// ArmPowerCut arms a one-shot power cut (replacing one armed before).
func (d *Device) ArmPowerCut(c PowerCut) error {
	switch c.Phase {
	case CutUpload, CutFlash, CutAny:
	default:
		return fmt.Errorf("sim: power cut phase %q: want %s, %s or %s", c.Phase, CutUpload, CutFlash, CutAny)
	}
	if c.AtByte < 0 || c.RestoreAfter < 0 {
		return fmt.Errorf("sim: power cut at byte %d, restore after %v: negative", c.AtByte, c.RestoreAfter)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed = &armedCut{PowerCut: c, left: c.AtByte}
	return nil
}

// InjectFault takes the soak's fault requests from the power socket (simpower.Injector).
// Noise applies to what the device sends; "commit" is an ACK module's phase, refused here.
func (d *Device) InjectFault(f simpower.Fault) error {
	switch f.Kind {
	case simpower.FaultNoise:
		d.SetNoiseRate(f.Rate)
		return nil
	case simpower.FaultCut:
		return d.ArmPowerCut(PowerCut{Phase: f.Phase, AtByte: f.AtByte, RestoreAfter: f.Restore})
	case simpower.FaultReenumerate:
		return d.Reenumerate()
	case simpower.FaultClear:
		d.SetNoiseRate(0)
		d.mu.Lock()
		d.armed = nil
		d.mu.Unlock()
		return nil
	}
	return fmt.Errorf("sim: unknown fault %q", f.Kind)
}

// cutPoint counts n bytes about to be received in a shell session (shell) or by the boot ROM
// (rom) against the armed cut. It returns how many of them get through before the cut and the
// cut when it fires now (nil otherwise). Caller holds mu.
func (d *Device) cutPoint(n int, shell, rom bool) (int, *armedCut) {
	c := d.armed
	if c == nil || !d.powered {
		return n, nil
	}
	counts := c.Phase == CutAny && (shell || rom) || c.Phase == CutUpload && shell || c.Phase == CutFlash && rom
	if !counts {
		return n, nil
	}
	if c.left >= n {
		c.left -= n
		return n, nil
	}
	d.armed = nil
	return c.left, c
}

// powerCutNow is the armed cut firing: power goes at once (nothing more is sent), the board is
// stopped as PowerOff stops it, and power returns after the cut's restore time.
func (d *Device) powerCutNow(restore time.Duration) {
	d.cut()
	d.logf("%s: power cut (armed)", d.cfg.Name)
	go func() {
		if err := d.do(reqPowerOff); err != nil {
			return // closed
		}
		if restore > 0 {
			time.Sleep(restore)
			_ = d.PowerOn()
		}
	}()
}

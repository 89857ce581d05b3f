package sim

import (
	"fmt"

	"hilbench/targets/simpower"
)

// PhaseAny is a PowerCut phase counting every byte the module receives from arming on (the
// soak's power cut at a random moment); "upload" and "commit" are the firmware's own.
const PhaseAny = simpower.PhaseAny

// InjectFault takes the soak's fault requests from the power socket (simpower.Injector). Noise
// corrupts bytes both ways at the rate given; a cut is armed as ArmPowerCut arms it.
func (m *Module) InjectFault(f simpower.Fault) error {
	switch f.Kind {
	case simpower.FaultNoise:
		m.SetLineFaults(LineFaults{Corrupt: f.Rate})
		return nil
	case simpower.FaultCut:
		switch f.Phase {
		case "upload", "commit", PhaseAny:
		default:
			return fmt.Errorf("ack sim: power cut phase %q: want upload, commit or any", f.Phase)
		}
		m.ArmPowerCut(PowerCut{Phase: f.Phase, AtByte: f.AtByte, RestoreAfter: f.Restore})
		return nil
	case simpower.FaultReenumerate:
		return m.Reenumerate()
	case simpower.FaultClear:
		m.mu.Lock()
		m.faults, m.cut = LineFaults{}, nil
		m.mu.Unlock()
		return nil
	}
	return fmt.Errorf("ack sim: unknown fault %q", f.Kind)
}

// cutAnyLocked counts n received bytes against a cut armed for PhaseAny: how many get through,
// and the cut when it fires now. The armed copy's AtByte counts down. m.mu held.
func (m *Module) cutAnyLocked(n int) (int, *PowerCut) {
	c := m.cut
	if c == nil || c.Phase != PhaseAny || !m.powered {
		return n, nil
	}
	if c.AtByte >= n {
		c.AtByte -= n
		return n, nil
	}
	m.cut = nil
	return c.AtByte, c
}

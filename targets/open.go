// Package targets opens a bench target as a device.Device, whatever its family: the one place
// that knows which driver serves which family, so the CLI and the specs loop over devices
// without asking.
package targets

import (
	"context"
	"fmt"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/targets/ack"
	"hilbench/targets/acs"
)

// Env is what opening a device needs besides its bench entry.
type Env struct {
	// Dir is the run directory: every byte each way goes to <Dir>/<target>.transcript ("" for no
	// transcript).
	Dir string
	// Redactor keeps secrets out of transcripts and errors (nil: nothing redacted).
	Redactor *console.Redactor
	// Profile is the product profile; ACK modules build their CSR's subject from it.
	Profile *pki.Profile
}

// Open opens a bench target's link and returns its driver. Optional capabilities
// (device.Flasher, device.PowerCycler, device.Identifier) are found by type assertion.
func Open(ctx context.Context, t *bench.Target, env Env) (device.Device, error) {
	var d device.Device
	var err error
	switch t.Family {
	case bench.FamilyACS:
		d, err = nilIfErr(acs.Open(ctx, t, env.Dir, env.Redactor))
	case bench.FamilyACK:
		if t.ACK != nil && t.ACK.Mode == bench.ACKModeExternal {
			d, err = nilIfErr(ack.OpenExternal(ctx, t, env.Dir, env.Redactor))
		} else {
			d, err = nilIfErr(ack.Open(ctx, t, env.Dir, env.Redactor, env.Profile))
		}
	default:
		err = fmt.Errorf("target %s: no driver for family %q", t.Name, t.Family)
	}
	return d, err
}

// nilIfErr keeps a failed open's typed nil pointer out of the interface.
func nilIfErr[D device.Device](d D, err error) (device.Device, error) {
	if err != nil {
		return nil, err
	}
	return d, nil
}

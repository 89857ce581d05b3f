package usb

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DFU drives one DFU interface of a device.
type DFU struct {
	dev   Device
	iface Interface
	stat  [6]byte // GETSTATUS buffer, reused: the download loop does not allocate

	// Clock sleeps the waits the device asks for; RealClock unless set.
	Clock Clock
	// BusyTimeout bounds how long one block (or DfuSe command) may keep the device busy.
	BusyTimeout time.Duration
	// ManifestTimeout bounds manifestation, from the zero-length DNLOAD to dfuIDLE or reset.
	ManifestTimeout time.Duration
}

// Defaults for the bounds.
const (
	DefaultBusyTimeout     = 30 * time.Second
	DefaultManifestTimeout = 60 * time.Second
)

// New returns a DFU driver for iface of dev. The caller has claimed the interface and
// selected its alt setting.
func New(dev Device, iface Interface) *DFU {
	return &DFU{dev: dev, iface: iface, Clock: RealClock{},
		BusyTimeout: DefaultBusyTimeout, ManifestTimeout: DefaultManifestTimeout}
}

// Interface is the interface this driver talks to.
func (d *DFU) Interface() Interface { return d.iface }

func (d *DFU) out(req uint8, val uint16, data []byte) error {
	_, err := d.dev.Control(reqTypeClassOut, req, val, uint16(d.iface.Number), data)
	return err
}

// GetStatus is DFU_GETSTATUS.
func (d *DFU) GetStatus() (DeviceStatus, error) {
	n, err := d.dev.Control(reqTypeClassIn, reqGetStatus, 0, uint16(d.iface.Number), d.stat[:])
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("GETSTATUS: %w", err)
	}
	if n < 6 {
		return DeviceStatus{}, fmt.Errorf("GETSTATUS: short answer (%d of 6 bytes)", n)
	}
	b := d.stat
	ms := uint32(b[1]) | uint32(b[2])<<8 | uint32(b[3])<<16
	return DeviceStatus{Status: Status(b[0]), PollTimeout: time.Duration(ms) * time.Millisecond,
		State: State(b[4]), IString: b[5]}, nil
}

// GetState is DFU_GETSTATE.
func (d *DFU) GetState() (State, error) {
	var b [1]byte
	n, err := d.dev.Control(reqTypeClassIn, reqGetState, 0, uint16(d.iface.Number), b[:])
	if err != nil {
		return 0, fmt.Errorf("GETSTATE: %w", err)
	}
	if n < 1 {
		return 0, fmt.Errorf("GETSTATE: empty answer")
	}
	return State(b[0]), nil
}

// ClearStatus is DFU_CLRSTATUS (dfuERROR -> dfuIDLE).
func (d *DFU) ClearStatus() error {
	if err := d.out(reqClrStatus, 0, nil); err != nil {
		return fmt.Errorf("CLRSTATUS: %w", err)
	}
	return nil
}

// Abort is DFU_ABORT (any *-IDLE -> dfuIDLE).
func (d *DFU) Abort() error {
	if err := d.out(reqAbort, 0, nil); err != nil {
		return fmt.Errorf("ABORT: %w", err)
	}
	return nil
}

// Detach switches a runtime (application) interface to DFU mode: GETSTATUS (a stall means
// appIDLE), DETACH with wDetachTimeOut, then a USB reset unless the device detaches itself.
// The device then re-enumerates in DFU mode and the caller reopens it. An interface that is
// in DFU mode already is left alone.
func (d *DFU) Detach(ctx context.Context) error {
	if !d.iface.Runtime() {
		return nil
	}
	st, err := d.GetStatus()
	switch {
	case errors.Is(err, ErrStall): // runtime GETSTATUS is optional: appIDLE
	case err != nil:
		return fmt.Errorf("detach: %w", err)
	case st.State != AppIdle:
		return fmt.Errorf("detach: %w", &StateError{State: st.State, Status: st.Status, Want: "appIDLE"})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.out(reqDetach, d.iface.Func.DetachTimeout, nil); err != nil {
		return fmt.Errorf("DETACH: %w", err)
	}
	if d.iface.Func.WillDetach() {
		return nil
	}
	// The reset must come within wDetachTimeOut; a device that is gone re-enumerated already.
	if err := d.dev.Reset(); err != nil && !errors.Is(err, ErrDeviceGone) {
		return fmt.Errorf("detach: USB reset: %w", err)
	}
	return nil
}

// Idle brings the device to dfuIDLE: CLRSTATUS from dfuERROR, ABORT from an *-IDLE state.
func (d *DFU) Idle() error {
	st, err := d.GetStatus()
	if err != nil {
		return err
	}
	switch st.State {
	case DfuIdle:
		if st.Status == StatusOK {
			return nil
		}
		err = d.ClearStatus()
	case DfuError:
		err = d.ClearStatus()
	case DnloadIdle, UploadIdle:
		err = d.Abort()
	case AppIdle, AppDetach:
		return fmt.Errorf("%w: in runtime mode, detach first", &StateError{State: st.State, Status: st.Status, Want: "dfuIDLE"})
	default:
		return &StateError{State: st.State, Status: st.Status, Want: "dfuIDLE"}
	}
	if err != nil {
		return err
	}
	if st, err = d.GetStatus(); err != nil {
		return err
	}
	if st.State != DfuIdle || st.Status != StatusOK {
		return &StateError{State: st.State, Status: st.Status, Want: "dfuIDLE"}
	}
	return nil
}

// failed reports the device's error state and clears it so the device is left usable.
func (d *DFU) failed(st DeviceStatus) error {
	e := &StateError{State: st.State, Status: st.Status}
	if st.State == DfuError {
		if cerr := d.ClearStatus(); cerr != nil {
			return fmt.Errorf("%w (and %v)", e, cerr)
		}
	}
	return e
}

// waitIdle polls GETSTATUS after a DNLOAD until dfuDNLOAD-IDLE, sleeping exactly the
// bwPollTimeout the device asks for between polls.
func (d *DFU) waitIdle(ctx context.Context, s *Stats) error {
	return d.waitIdleWithin(ctx, s, d.BusyTimeout)
}

// waitIdleWithin is waitIdle with its own bound, for work longer than a block (a mass erase).
func (d *DFU) waitIdleWithin(ctx context.Context, s *Stats, limit time.Duration) error {
	var deadline time.Time
	for {
		st, err := d.GetStatus()
		s.Polls++
		if err != nil {
			return err
		}
		if st.Status != StatusOK || st.State == DfuError {
			return d.failed(st)
		}
		switch st.State {
		case DnloadIdle:
			return nil
		case DnloadSync, DnBusy:
		default:
			return &StateError{State: st.State, Status: st.Status, Want: "dfuDNLOAD-IDLE"}
		}
		now := d.Clock.Now()
		if deadline.IsZero() {
			deadline = now.Add(limit)
		} else if now.After(deadline) {
			return fmt.Errorf("device still in %s after %v", st.State, limit)
		}
		if err := d.Clock.Sleep(ctx, st.PollTimeout); err != nil {
			return err
		}
		s.PollWait += st.PollTimeout
	}
}

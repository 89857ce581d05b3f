package usb

import (
	"context"
	"errors"
	"time"
)

// Control is one USB control transfer; gousb.Device.Control has this signature, and so do the
// fake device, the playback and the recorder. For an IN transfer (rType bit 7 set) data is the
// buffer to fill and the count is what the device returned.
type Control interface {
	Control(rType, request uint8, val, idx uint16, data []byte) (int, error)
}

// Device is what the DFU code needs beyond control transfers. String and configuration
// descriptors are read with GET_DESCRIPTOR over Control, so a fake can serve them too.
type Device interface {
	Control
	// Reset issues a USB port reset; the device may re-enumerate (and then the caller reopens it).
	Reset() error
}

var (
	// ErrStall is a STALL handshake: the device refused the request.
	ErrStall = errors.New("usb: request stalled")
	// ErrDeviceGone is a transfer to a device that is no longer on the bus.
	ErrDeviceGone = errors.New("usb: device gone")
)

// Clock is the time source of the protocol code; tests inject a simulated one so that the
// waits a device asks for are checked without being waited.
type Clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// Sleep waits d or until ctx is done.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if d <= preciseSleepMax {
		if err := ctx.Err(); err != nil {
			return err
		}
		preciseSleep(d)
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Request types (bmRequestType) used here.
const (
	reqTypeClassOut = 0x21 // host-to-device, class, interface
	reqTypeClassIn  = 0xA1 // device-to-host, class, interface
	reqTypeStdIn    = 0x80 // device-to-host, standard, device
	reqGetDescr     = 0x06
)

// DFU class requests.
const (
	reqDetach    = 0
	reqDnload    = 1
	reqUpload    = 2
	reqGetStatus = 3
	reqClrStatus = 4
	reqGetState  = 5
	reqAbort     = 6
)

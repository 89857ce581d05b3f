package usb

import (
	"errors"
	"testing"

	"github.com/google/gousb"
)

func TestMapError(t *testing.T) {
	if err := mapError(gousb.ErrorPipe); !errors.Is(err, ErrStall) {
		t.Errorf("pipe error -> %v", err)
	}
	if err := mapError(gousb.ErrorNoDevice); !errors.Is(err, ErrDeviceGone) {
		t.Errorf("no device -> %v", err)
	}
	if err := mapError(gousb.ErrorTimeout); errors.Is(err, ErrStall) || errors.Is(err, ErrDeviceGone) {
		t.Errorf("timeout -> %v", err)
	}
}

func TestOpenFindsNothingWithoutABus(t *testing.T) {
	ctx := gousb.NewContext()
	defer ctx.Close()
	_, err := Open(ctx, Match{Vendor: 0x0483, Product: 0xdf11})
	if !errors.Is(err, ErrNotFound) {
		t.Skipf("a USB bus is present here (%v)", err)
	}
}

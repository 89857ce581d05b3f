package usb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/gousb"
)

// FlashTarget finds the device to flash.
type FlashTarget struct {
	DFU     Match  // the device in DFU mode
	Runtime *Match // the device while it runs its firmware, when it differs (nil: same as DFU)
	Alt     uint8  // alternate setting to download to
	Address uint32 // DfuSe: where the image goes (0: start of the memory map)
	// MassErase erases all of a DfuSe device's flash before writing.
	MassErase bool
	// Unprotect lifts a DfuSe device's read protection first. The device erases its flash and
	// resets; Flash waits for it to come back in DFU mode (its boot strap must stay set).
	Unprotect bool
	// ReenumerateTimeout bounds the wait for the device to come back after a detach.
	ReenumerateTimeout time.Duration
}

// FlashResult is a verified download.
type FlashResult struct {
	Interface Interface
	Stats     Stats
	ReadBack  bool // the device allowed an upload and it matched the image
}

// Flash downloads data to a DFU device over libusb: it detaches a device running its firmware
// first, downloads with status polling, and reads the image back when the device can upload.
func Flash(ctx context.Context, t FlashTarget, data []byte, progress func(done, total int64)) (*FlashResult, error) {
	if t.ReenumerateTimeout <= 0 {
		t.ReenumerateTimeout = 10 * time.Second
	}
	uctx := gousb.NewContext()
	defer uctx.Close()

	dev, err := openForDFU(ctx, uctx, t)
	if err != nil {
		return nil, err
	}
	defer func() {
		if dev != nil {
			dev.Close()
		}
	}()
	iface, err := claimDFU(dev, t)
	if err != nil {
		return nil, err
	}
	if t.Unprotect {
		if err := New(dev, *iface).ReadUnprotect(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", t.DFU, err)
		}
		dev.Close()
		again, err := Reopen(ctx, uctx, t.DFU, t.ReenumerateTimeout)
		if err != nil {
			dev = nil
			return nil, fmt.Errorf("%s after read unprotect (the device resets; its boot strap must keep it in DFU mode): %w", t.DFU, err)
		}
		dev = again
		if iface, err = claimDFU(dev, t); err != nil {
			return nil, err
		}
	}
	d := New(dev, *iface)
	st, err := d.Download(ctx, data, DownloadOptions{Progress: progress, Address: t.Address, MassErase: t.MassErase})
	if err != nil {
		return nil, err
	}
	res := &FlashResult{Interface: *iface, Stats: st}
	// A device that reset itself to run the new firmware cannot be read back; a tolerant one can.
	if iface.Func.CanUpload() && st.Manifest == "dfuIDLE" {
		var back []byte
		if iface.Func.DfuSe() {
			back, err = d.UploadFrom(ctx, t.Address, int64(len(data)))
		} else {
			back, err = d.Upload(ctx, int64(len(data)))
		}
		if err != nil {
			return res, fmt.Errorf("reading the image back: %w", err)
		}
		if !bytes.Equal(back, data) {
			return res, fmt.Errorf("the image read back (%d bytes) differs from the one written (%d bytes)", len(back), len(data))
		}
		res.ReadBack = true
	}
	return res, nil
}

// claimDFU finds and claims the DFU-mode interface with the target's alt setting.
func claimDFU(dev *USBDevice, t FlashTarget) (*Interface, error) {
	ifaces, err := dev.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("reading %s's DFU interfaces: %w", t.DFU, err)
	}
	var iface *Interface
	for i := range ifaces {
		if !ifaces[i].Runtime() && ifaces[i].Alt == t.Alt {
			iface = &ifaces[i]
		}
	}
	if iface == nil {
		return nil, fmt.Errorf("%s has no DFU-mode interface with alt setting %d (it has: %v)", t.DFU, t.Alt, ifaces)
	}
	if !iface.Func.CanDownload() {
		return nil, fmt.Errorf("%s: %s does not accept downloads", t.DFU, iface)
	}
	if err := dev.Claim(*iface); err != nil {
		return nil, fmt.Errorf("claiming %s: %w", iface, err)
	}
	return iface, nil
}

// openForDFU opens the device in DFU mode, detaching it from its firmware first if needed.
func openForDFU(ctx context.Context, uctx *gousb.Context, t FlashTarget) (*USBDevice, error) {
	dev, err := Open(uctx, t.DFU)
	if err == nil {
		return dev, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	rt := t.DFU
	if t.Runtime != nil {
		rt = *t.Runtime
	}
	run, rerr := Open(uctx, rt)
	if rerr != nil {
		return nil, fmt.Errorf("no DFU device %s (nor one running its firmware as %s): %w", t.DFU, rt, rerr)
	}
	ifaces, err := run.Interfaces()
	if err != nil {
		run.Close()
		return nil, err
	}
	var runtime *Interface
	for i := range ifaces {
		if ifaces[i].Runtime() {
			runtime = &ifaces[i]
		}
	}
	if runtime == nil {
		run.Close()
		return nil, fmt.Errorf("%s has no DFU runtime interface to detach it with", rt)
	}
	if err := run.Claim(*runtime); err != nil {
		run.Close()
		return nil, err
	}
	if err := New(run, *runtime).Detach(ctx); err != nil {
		run.Close()
		return nil, fmt.Errorf("detaching %s to DFU mode: %w", rt, err)
	}
	run.Close()
	return Reopen(ctx, uctx, t.DFU, t.ReenumerateTimeout)
}

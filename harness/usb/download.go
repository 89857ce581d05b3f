package usb

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DownloadOptions tune a Download.
type DownloadOptions struct {
	// Progress, when set, is called after each block the device has accepted.
	Progress func(done, total int64)
	// Address is where a DfuSe image goes; 0 means the start of the memory map.
	Address uint32
	// Leave makes a DfuSe device leave DFU mode and run the firmware afterwards.
	Leave bool
	// MassErase erases all of a DfuSe device's flash first, instead of the pages the image
	// covers: nothing of the previous firmware stays behind.
	MassErase bool
}

// Stats describe a download.
type Stats struct {
	Bytes         int64
	Blocks        int           // data blocks (DfuSe commands not counted)
	Commands      int           // DfuSe commands (set address, erase)
	Polls         int           // GETSTATUS requests
	PollWait      time.Duration // time slept on the device's bwPollTimeout
	ManifestPolls int
	Duration      time.Duration
	// Manifest tells how the download ended: "dfuIDLE", "reset", "left" (the device went
	// away during manifestation, which a non-tolerant device may do), "none" (DfuSe, no leave).
	Manifest string
}

// Throughput is bytes per second over the whole download.
func (s Stats) Throughput() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Bytes) / s.Duration.Seconds()
}

// Download writes data to the device: recover to dfuIDLE, blocks of wTransferSize each
// followed by GETSTATUS polling, a zero-length DNLOAD, then manifestation. A DfuSe device
// gets its pages erased and the address set first. Any error means the flash failed.
func (d *DFU) Download(ctx context.Context, data []byte, opts DownloadOptions) (Stats, error) {
	var s Stats
	start := d.Clock.Now()
	defer func() { s.Duration = d.Clock.Now().Sub(start) }()
	f := d.iface.Func
	if !f.CanDownload() {
		return s, fmt.Errorf("download: %s cannot download (bitCanDnload clear)", d.iface)
	}
	if f.TransferSize == 0 {
		return s, fmt.Errorf("download: %s has wTransferSize 0", d.iface)
	}
	if len(data) == 0 {
		return s, errors.New("download: empty image")
	}
	if err := d.Idle(); err != nil {
		return s, fmt.Errorf("download: recover: %w", err)
	}
	var err error
	if f.DfuSe() {
		err = d.downloadDfuSe(ctx, data, opts, &s)
	} else {
		err = d.downloadBlocks(ctx, data, 0, int64(len(data)), opts, &s)
		if err == nil {
			err = d.manifest(ctx, &s, false)
		}
	}
	s.Duration = d.Clock.Now().Sub(start)
	return s, err
}

// downloadBlocks sends data in wTransferSize blocks numbered from first (wrapping at 16 bits).
func (d *DFU) downloadBlocks(ctx context.Context, data []byte, first uint16, total int64, opts DownloadOptions, s *Stats) error {
	ts := int(d.iface.Func.TransferSize)
	num := first
	for off, i := 0, 0; off < len(data); off, i = off+ts, i+1 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("DNLOAD block %d: %w", i, err)
		}
		end := min(off+ts, len(data))
		if err := d.out(reqDnload, num, data[off:end]); err != nil {
			return fmt.Errorf("DNLOAD block %d (bytes %d..%d): %w", i, off, end, d.afterStall(err))
		}
		if err := d.waitIdle(ctx, s); err != nil {
			return fmt.Errorf("DNLOAD block %d (bytes %d..%d): %w", i, off, end, err)
		}
		s.Blocks++
		s.Bytes += int64(end - off)
		if opts.Progress != nil {
			opts.Progress(s.Bytes, total)
		}
		num++
		if num == 0 && first != 0 { // DfuSe data blocks restart at 2 after a wrap
			num = first
		}
	}
	return nil
}

// manifest ends a download: zero-length DNLOAD, then GETSTATUS through dfuMANIFEST-SYNC and
// dfuMANIFEST to dfuIDLE (tolerant) or dfuMANIFEST-WAIT-RESET (then a USB reset). A device
// that is leaving DFU mode (DfuSe leave) may vanish.
func (d *DFU) manifest(ctx context.Context, s *Stats, leaving bool) error {
	if err := d.out(reqDnload, 0, nil); err != nil {
		return fmt.Errorf("DNLOAD end of image: %w", err)
	}
	mayVanish := leaving || !d.iface.Func.ManifestationTolerant()
	deadline := d.Clock.Now().Add(d.ManifestTimeout)
	for {
		st, err := d.GetStatus()
		s.Polls++
		s.ManifestPolls++
		if err != nil {
			// A non-tolerant device may reset itself into the new firmware.
			if mayVanish && errors.Is(err, ErrDeviceGone) {
				s.Manifest = "left"
				return nil
			}
			return fmt.Errorf("manifestation: %w", err)
		}
		if st.Status != StatusOK || st.State == DfuError {
			return fmt.Errorf("manifestation: %w", d.failed(st))
		}
		switch st.State {
		case DfuIdle:
			s.Manifest = "dfuIDLE"
			return nil
		case ManifestWaitReset:
			if err := d.dev.Reset(); err != nil && !errors.Is(err, ErrDeviceGone) {
				return fmt.Errorf("manifestation: USB reset: %w", err)
			}
			s.Manifest = "reset"
			return nil
		case ManifestSync, Manifest:
		default:
			return fmt.Errorf("manifestation: %w", &StateError{State: st.State, Status: st.Status, Want: "dfuMANIFEST"})
		}
		if d.Clock.Now().After(deadline) {
			return fmt.Errorf("manifestation: device still in %s after %v", st.State, d.ManifestTimeout)
		}
		if err := d.Clock.Sleep(ctx, st.PollTimeout); err != nil {
			return fmt.Errorf("manifestation: %w", err)
		}
		s.PollWait += st.PollTimeout
	}
}

// Upload reads the device's memory back: blocks of wTransferSize until a short block, or
// until max bytes (then ABORT returns the device to dfuIDLE).
func (d *DFU) Upload(ctx context.Context, max int64) ([]byte, error) {
	f := d.iface.Func
	if !f.CanUpload() {
		return nil, fmt.Errorf("upload: %s cannot upload (bitCanUpload clear)", d.iface)
	}
	if err := d.Idle(); err != nil {
		return nil, fmt.Errorf("upload: recover: %w", err)
	}
	first := uint16(0)
	if f.DfuSe() {
		first = 2 // DfuSe reads from the address pointer, set by a download
	}
	ts := int64(f.TransferSize)
	var out []byte
	buf := make([]byte, ts)
	for i, num := 0, first; int64(len(out)) < max; i, num = i+1, num+1 {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("UPLOAD block %d: %w", i, err)
		}
		req := buf[:min(ts, max-int64(len(out)))]
		got, err := d.dev.Control(reqTypeClassIn, reqUpload, num, uint16(d.iface.Number), req)
		if err != nil {
			return out, fmt.Errorf("UPLOAD block %d: %w", i, err)
		}
		out = append(out, req[:got]...)
		if got < len(req) {
			return out, nil // short block: the device is back in dfuIDLE
		}
	}
	if err := d.Abort(); err != nil {
		return out, fmt.Errorf("upload: %w", err)
	}
	return out, nil
}

// afterStall adds the device's state to a stalled request and clears the error, so that the
// device is left usable; other errors pass unchanged.
func (d *DFU) afterStall(err error) error {
	if !errors.Is(err, ErrStall) {
		return err
	}
	st, serr := d.GetStatus()
	if serr != nil {
		return fmt.Errorf("%w (then %v)", err, serr)
	}
	return fmt.Errorf("%w: %w", err, d.failed(st))
}

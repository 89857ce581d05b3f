package usb_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"hilbench/harness/usb"
	"hilbench/harness/usb/fakedfu"
)

var updateRecordings = flag.Bool("update-recordings", false, "rewrite testdata/*.rec from the fake")

const recording = "testdata/download.rec"

// recordedSession is what testdata/download.rec holds: a device found in dfuERROR, a
// download of 3000 bytes in 1 KiB blocks that asks to be polled more than once per block,
// and a manifestation that ends in dfuMANIFEST-WAIT-RESET and a USB reset.
func recordedSession(t *testing.T, dev usb.Device, clock usb.Clock, data []byte, transferSize uint16) error {
	t.Helper()
	ifs, err := usb.FindInterfaces(dev)
	if err != nil {
		return err
	}
	iface := ifs[0]
	if transferSize != 0 {
		iface.Func.TransferSize = transferSize
	}
	d := usb.New(dev, iface)
	d.Clock = clock
	_, err = d.Download(context.Background(), data, usb.DownloadOptions{})
	return err
}

var recordedConfig = fakedfu.Config{TransferSize: 1024, ProgramTime: 3 * time.Millisecond,
	PollTimeout: 2 * time.Millisecond, StartInError: true, ManifestPolls: 2, ManifestPoll: 5 * time.Millisecond}

func TestRecordingUpToDate(t *testing.T) {
	if !*updateRecordings {
		t.Skip("run with -update-recordings to rewrite " + recording)
	}
	cfg := recordedConfig
	cfg.Clock = fakedfu.NewSimClock()
	f, err := fakedfu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rec := usb.Record(f, &buf)
	if err := recordedSession(t, rec, cfg.Clock, image(3000, 40), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recording, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadRecording(t *testing.T) *usb.Playback {
	t.Helper()
	p, err := usb.LoadPlaybackFile(recording)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlayback(t *testing.T) {
	p := loadRecording(t)
	if err := recordedSession(t, p, fakedfu.NewSimClock(), image(3000, 40), 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestPlaybackDetectsChanges(t *testing.T) {
	t.Run("transfer size", func(t *testing.T) {
		p := loadRecording(t)
		err := recordedSession(t, p, fakedfu.NewSimClock(), image(3000, 40), 512)
		if !errors.Is(err, usb.ErrPlaybackMismatch) || !strings.Contains(err.Error(), "got  out 21 01 0000 0000") {
			t.Fatalf("error %v", err)
		}
		if p.Done() == nil {
			t.Fatal("Done after a mismatch is nil")
		}
	})
	t.Run("image", func(t *testing.T) {
		data := image(3000, 40)
		data[1500] ^= 1
		p := loadRecording(t)
		err := recordedSession(t, p, fakedfu.NewSimClock(), data, 0)
		if !errors.Is(err, usb.ErrPlaybackMismatch) || !strings.Contains(err.Error(), "data differs from byte 476") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("unused steps", func(t *testing.T) {
		p := loadRecording(t)
		if _, err := usb.FindInterfaces(p); err != nil {
			t.Fatal(err)
		}
		err := p.Done()
		if err == nil || !strings.Contains(err.Error(), "recorded transfers not used; next is line") {
			t.Fatalf("Done: %v", err)
		}
	})
}

func TestRecordErrors(t *testing.T) {
	f, err := fakedfu.New(fakedfu.Config{GoneAfterBlock: 1, ManifestationTolerant: true})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rec := usb.Record(f, &buf)
	// A stall (GETSTATUS to the wrong interface), then a download that loses the device.
	if _, err := rec.Control(0xA1, 3, 0, 7, make([]byte, 6)); !errors.Is(err, usb.ErrStall) {
		t.Fatal(err)
	}
	clock := fakedfu.NewSimClock()
	if err := recordedSession(t, rec, clock, image(3000, 41), 0); !errors.Is(err, usb.ErrDeviceGone) {
		t.Fatalf("session: %v", err)
	}
	if rec.Err() != nil {
		t.Fatal(rec.Err())
	}
	text := buf.String()
	if !strings.Contains(text, "in a1 03 0000 0007 6 -> STALL") || !strings.Contains(text, "-> GONE") {
		t.Fatalf("recording lacks STALL/GONE:\n%s", text)
	}
	p, err := usb.LoadPlayback(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Control(0xA1, 3, 0, 7, make([]byte, 6)); !errors.Is(err, usb.ErrStall) {
		t.Fatalf("replayed stall: %v", err)
	}
	if err := recordedSession(t, p, clock, image(3000, 41), 0); !errors.Is(err, usb.ErrDeviceGone) {
		t.Fatalf("replayed session: %v", err)
	}
	if err := p.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestPlaybackParseErrors(t *testing.T) {
	for _, bad := range []string{
		"out 21 01 0000",
		"in a1 03 0000 0000 6",
		"in 21 03 0000 0000 6 -> 00",
		"out 21 01 0000 0000 zz",
		"out 21 01 0000 0000 - -> MAYBE",
		"in a1 03 0000 0000 2 -> 000000",
		"sideways 21 01 0000 0000 -",
	} {
		if _, err := usb.LoadPlayback(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}

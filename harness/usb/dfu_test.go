package usb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"hilbench/harness/usb"
	"hilbench/harness/usb/fakedfu"
)

func TestFindInterfaces(t *testing.T) {
	r := newRig(t, fakedfu.Config{Interface: 2, TransferSize: 2048, ManifestationTolerant: true, UploadData: []byte{1}, DetachTimeout: 500})
	ifs, err := usb.FindInterfaces(r.fake)
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 {
		t.Fatalf("%d interfaces, want 1", len(ifs))
	}
	i := ifs[0]
	f := i.Func
	if i.Number != 2 || i.Alt != 0 || i.Protocol != usb.ProtoDFUMode || i.Name != "Fake Flash" {
		t.Errorf("interface %+v", i)
	}
	if !f.CanDownload() || !f.CanUpload() || !f.ManifestationTolerant() || f.WillDetach() ||
		f.TransferSize != 2048 || f.DetachTimeout != 500 || f.Version != 0x0110 || f.DfuSe() {
		t.Errorf("functional descriptor %+v", f)
	}
}

func TestDownload(t *testing.T) {
	r := newRig(t, fakedfu.Config{TransferSize: 1024, ProgramTime: 5 * time.Millisecond, ManifestationTolerant: true})
	data := image(10*1024+100, 1)
	var last, calls int64
	s := mustDownload(t, r, data, usb.DownloadOptions{Progress: func(done, total int64) {
		if done <= last || total != int64(len(data)) {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
		calls++
	}})
	sameBytes(t, "image", r.fake.Image(), data)
	r.clean(t)
	r.honoured(t)
	if s.Blocks != 11 || s.Bytes != int64(len(data)) || calls != 11 || last != int64(len(data)) {
		t.Errorf("stats %+v, progress calls %d", s, calls)
	}
	if s.PollWait != 11*5*time.Millisecond || s.Manifest != "dfuIDLE" {
		t.Errorf("stats %+v", s)
	}
	if r.fake.State() != uint8(usb.DfuIdle) {
		t.Errorf("device left in %v", usb.State(r.fake.State()))
	}
}

func TestDownloadComesBackWhenAsked(t *testing.T) {
	// The device asks for 2 ms at a time but needs 5 ms per block: 2+2+1 per block.
	r := newRig(t, fakedfu.Config{TransferSize: 512, ProgramTime: 5 * time.Millisecond, PollTimeout: 2 * time.Millisecond, ManifestationTolerant: true})
	data := image(2048, 2)
	s := mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "image", r.fake.Image(), data)
	r.clean(t)
	r.honoured(t)
	if want := 4 * 5 * time.Millisecond; s.PollWait != want {
		t.Errorf("waited %v, want %v", s.PollWait, want)
	}
}

func TestDownloadRecoversFromDfuError(t *testing.T) {
	r := newRig(t, fakedfu.Config{StartInError: true, ManifestationTolerant: true})
	data := image(3000, 3)
	mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "image", r.fake.Image(), data)
	r.clean(t)
}

func TestDownloadAbortsUploadIdle(t *testing.T) {
	r := newRig(t, fakedfu.Config{ManifestationTolerant: true, UploadData: image(5000, 4)})
	// Leave the device in dfuUPLOAD-IDLE, as an interrupted upload would.
	if _, err := r.fake.Control(0xA1, 2, 0, 0, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	data := image(1500, 5)
	mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "image", r.fake.Image(), data)
	r.clean(t)
}

func TestDownloadErrorStatusOnBlock(t *testing.T) {
	for _, st := range []struct {
		code uint8
		name string
	}{{fakedfu.ErrVerify, "errVERIFY"}, {fakedfu.ErrWrite, "errWRITE"}} {
		t.Run(st.name, func(t *testing.T) {
			r := newRig(t, fakedfu.Config{ErrorOnBlock: 3, ErrorStatus: st.code, ManifestationTolerant: true, ProgramTime: time.Millisecond})
			data := image(8000, 6)
			_, err := r.dfu.Download(context.Background(), data, usb.DownloadOptions{})
			want := "DNLOAD block 2 (bytes 2048..3072): device in dfuERROR (status " + st.name + ")"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want it to contain %q", err, want)
			}
			var se *usb.StateError
			if !errors.As(err, &se) || se.State != usb.DfuError || se.Status.String() != st.name {
				t.Fatalf("error %v is not a StateError with %s", err, st.name)
			}
			if got := usb.State(r.fake.State()); got != usb.DfuIdle {
				t.Fatalf("device left in %v, want dfuIDLE (CLRSTATUS)", got)
			}
			if r.fake.Stats().Downloads != 0 {
				t.Fatal("failed download was manifested")
			}
			mustDownload(t, r, data, usb.DownloadOptions{})
			sameBytes(t, "image after retry", r.fake.Image(), data)
			r.clean(t)
		})
	}
}

func TestDownloadStall(t *testing.T) {
	r := newRig(t, fakedfu.Config{StallOnBlock: 2, ManifestationTolerant: true})
	data := image(4000, 7)
	_, err := r.dfu.Download(context.Background(), data, usb.DownloadOptions{})
	if !errors.Is(err, usb.ErrStall) || !strings.Contains(err.Error(), "DNLOAD block 1") ||
		!strings.Contains(err.Error(), "errSTALLEDPKT") {
		t.Fatalf("error %v, want a stall on block 1 naming errSTALLEDPKT", err)
	}
	if got := usb.State(r.fake.State()); got != usb.DfuIdle {
		t.Fatalf("device left in %v", got)
	}
	mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "image after retry", r.fake.Image(), data)
	r.clean(t)
}

func TestDownloadDeviceGone(t *testing.T) {
	r := newRig(t, fakedfu.Config{GoneAfterBlock: 3, ManifestationTolerant: true})
	_, err := r.dfu.Download(context.Background(), image(8000, 8), usb.DownloadOptions{})
	if !errors.Is(err, usb.ErrDeviceGone) || !strings.Contains(err.Error(), "DNLOAD block 3 ") {
		t.Fatalf("error %v, want ErrDeviceGone naming block 3", err)
	}
}

func TestManifestationNotTolerant(t *testing.T) {
	r := newRig(t, fakedfu.Config{ManifestPolls: 3, ManifestPoll: 20 * time.Millisecond})
	data := image(2000, 9)
	s := mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "image", r.fake.Image(), data)
	if s.Manifest != "reset" || r.fake.Stats().Resets != 1 || !r.fake.Runtime() {
		t.Fatalf("manifest %q, resets %d, runtime %v", s.Manifest, r.fake.Stats().Resets, r.fake.Runtime())
	}
	r.clean(t)
	r.honoured(t)
}

func TestSlowManifestation(t *testing.T) {
	// 80 polls of 100 ms: 8 s of manifestation fits a 10 s bound; 120 polls do not.
	for _, tc := range []struct {
		polls int
		ok    bool
	}{{80, true}, {120, false}} {
		r := newRig(t, fakedfu.Config{ManifestationTolerant: true, ManifestPolls: tc.polls, ManifestPoll: 100 * time.Millisecond})
		r.dfu.ManifestTimeout = 10 * time.Second
		data := image(1000, 10)
		s, err := r.dfu.Download(context.Background(), data, usb.DownloadOptions{})
		if tc.ok {
			if err != nil {
				t.Fatalf("%d polls: %v", tc.polls, err)
			}
			sameBytes(t, "image", r.fake.Image(), data)
			r.honoured(t)
			if s.ManifestPolls < tc.polls {
				t.Errorf("%d manifest polls, want >= %d", s.ManifestPolls, tc.polls)
			}
		} else if err == nil || !strings.Contains(err.Error(), "still in dfuMANIFEST after 10s") {
			t.Fatalf("%d polls: error %v, want the manifestation bound", tc.polls, err)
		}
		r.clean(t)
	}
}

func TestDetach(t *testing.T) {
	for _, tc := range []struct {
		name              string
		stall, willDetach bool
		wantResets        int
	}{{"reset", false, false, 1}, {"getstatus stalls", true, false, 1}, {"will detach", false, true, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, fakedfu.Config{Runtime: true, RuntimeStall: tc.stall, WillDetach: tc.willDetach, DetachTimeout: 250})
			if !r.dfu.Interface().Runtime() {
				t.Fatal("runtime fake shows a DFU-mode interface")
			}
			if err := r.dfu.Detach(context.Background()); err != nil {
				t.Fatal(err)
			}
			s := r.fake.Stats()
			if r.fake.Runtime() || s.Detaches != 1 || s.Resets != tc.wantResets {
				t.Fatalf("runtime %v, stats %+v", r.fake.Runtime(), s)
			}
			d := r.open(t) // re-enumerated in DFU mode
			if d.Interface().Runtime() {
				t.Fatal("still runtime after detach")
			}
			data := image(1500, 11)
			if _, err := d.Download(context.Background(), data, usb.DownloadOptions{}); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "image", r.fake.Image(), data)
			r.clean(t)
		})
	}
}

func TestDownloadInRuntimeModeFails(t *testing.T) {
	r := newRig(t, fakedfu.Config{Runtime: true})
	_, err := r.dfu.Download(context.Background(), image(100, 1), usb.DownloadOptions{})
	if err == nil || !strings.Contains(err.Error(), "device in appIDLE") || !strings.Contains(err.Error(), "detach first") {
		t.Fatalf("error %v", err)
	}
}

func TestUpload(t *testing.T) {
	for _, n := range []int{2500, 2048, 0} {
		up := image(n, 12)
		r := newRig(t, fakedfu.Config{UploadData: up})
		got, err := r.dfu.Upload(context.Background(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "upload", got, up)
		if s := usb.State(r.fake.State()); s != usb.DfuIdle {
			t.Fatalf("device left in %v", s)
		}
		r.clean(t)
	}
	// A bound below the size: truncated, and ABORT leaves the device in dfuIDLE.
	up := image(5000, 13)
	r := newRig(t, fakedfu.Config{UploadData: up})
	got, err := r.dfu.Upload(context.Background(), 1500)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "upload", got, up[:1500])
	if s := usb.State(r.fake.State()); s != usb.DfuIdle {
		t.Fatalf("device left in %v", s)
	}
	r.clean(t)
}

func TestStateErrorNames(t *testing.T) {
	e := &usb.StateError{State: usb.DfuError, Status: usb.StatusErrVerify}
	if e.Error() != "device in dfuERROR (status errVERIFY)" {
		t.Errorf("%q", e.Error())
	}
	if usb.State(42).String() != "state(42)" || usb.StatusErrStalledPkt.String() != "errSTALLEDPKT" {
		t.Error("names")
	}
}

func TestDownloadBlockNumbersWrap(t *testing.T) {
	r := newRig(t, fakedfu.Config{TransferSize: 8, ManifestationTolerant: true})
	data := image(0x10010*8, 14) // past block 0xFFFF
	s := mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "image", r.fake.Image(), data)
	if s.Blocks != 0x10010 {
		t.Fatalf("%d blocks", s.Blocks)
	}
	r.clean(t)
}

func TestDownloadCancelled(t *testing.T) {
	r := newRig(t, fakedfu.Config{ManifestationTolerant: true})
	ctx, cancel := context.WithCancel(context.Background())
	_, err := r.dfu.Download(ctx, image(5000, 15), usb.DownloadOptions{Progress: func(done, total int64) {
		if done >= 2048 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "DNLOAD block 2") {
		t.Fatalf("error %v", err)
	}
	if r.fake.Stats().Downloads != 0 {
		t.Fatal("cancelled download was manifested")
	}
}

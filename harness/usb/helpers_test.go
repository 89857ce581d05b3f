package usb_test

import (
	"bytes"
	"context"
	"math/rand"
	"testing"
	"time"

	"hilbench/harness/usb"
	"hilbench/harness/usb/fakedfu"
)

// rig is a fake device on simulated time and a DFU driver found through its descriptors.
type rig struct {
	fake  *fakedfu.Device
	clock *fakedfu.SimClock
	dfu   *usb.DFU
}

func newRig(t testing.TB, cfg fakedfu.Config) *rig {
	t.Helper()
	if cfg.Clock == nil && !cfg.RealTime {
		cfg.Clock = fakedfu.NewSimClock()
	}
	f, err := fakedfu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{fake: f, clock: cfg.Clock}
	r.dfu = r.open(t)
	return r
}

// open finds the DFU interface as a host would after (re)enumeration.
func (r *rig) open(t testing.TB) *usb.DFU {
	t.Helper()
	ifs, err := usb.FindInterfaces(r.fake)
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) == 0 {
		t.Fatal("no DFU interface")
	}
	d := usb.New(r.fake, ifs[0])
	if r.clock != nil {
		d.Clock = r.clock
	}
	return d
}

// clean fails the test on protocol violations and early polls the fake saw.
func (r *rig) clean(t *testing.T) {
	t.Helper()
	s := r.fake.Stats()
	if len(s.Violations) > 0 {
		t.Errorf("fake saw protocol violations: %q", s.Violations)
	}
	if s.EarlyPolls > 0 {
		t.Errorf("fake saw %d GETSTATUS before the bwPollTimeout it asked", s.EarlyPolls)
	}
}

// honoured checks the host slept exactly the non-zero waits the device asked, in order.
func (r *rig) honoured(t *testing.T) {
	t.Helper()
	asked := r.fake.Stats().AskedPolls
	var slept []time.Duration
	for _, d := range r.clock.Sleeps() {
		if d > 0 {
			slept = append(slept, d)
		}
	}
	if len(asked) != len(slept) {
		t.Fatalf("device asked %d waits, host slept %d", len(asked), len(slept))
	}
	for i := range asked {
		if asked[i] != slept[i] {
			t.Fatalf("wait %d: device asked %v, host slept %v", i, asked[i], slept[i])
		}
	}
}

func image(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func mustDownload(t *testing.T, r *rig, data []byte, opts usb.DownloadOptions) usb.Stats {
	t.Helper()
	s, err := r.dfu.Download(context.Background(), data, opts)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	return s
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
	}
}

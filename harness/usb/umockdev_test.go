package usb_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gousb"

	"hilbench/harness/usb"
	"hilbench/harness/usb/fakedfu"
)

// The umockdev test records a session against the fake, turns it into a usbmon capture, and
// runs this test binary again under `umockdev-run --pcap`, where libusb sees a USB device
// and the gousb adapter runs for real.
const (
	umockdevChildEnv = "HILBENCH_UMOCKDEV_CHILD"
	umockdevSys      = "/devices/pci0000:00/0000:00:14.0/usb1/1-1"
)

var umockdevConfig = fakedfu.Config{TransferSize: 1024, ProgramTime: time.Millisecond, ManifestationTolerant: true}

func umockdevSession(t *testing.T, dev usb.Device, clock usb.Clock, seed int64) (usb.Stats, error) {
	t.Helper()
	ifs, err := usb.FindInterfaces(dev)
	if err != nil {
		return usb.Stats{}, err
	}
	d := usb.New(dev, ifs[0])
	d.Clock = clock
	return d.Download(context.Background(), image(3000, seed), usb.DownloadOptions{})
}

func TestUmockdevGousb(t *testing.T) {
	if os.Getenv(umockdevChildEnv) != "" {
		t.Skip("in the umockdev child")
	}
	run, err := exec.LookPath("umockdev-run")
	if err != nil {
		t.Skip("umockdev-run not installed (Debian package umockdev): gousb end-to-end test skipped")
	}
	dir := t.TempDir()
	cfg := umockdevConfig
	cfg.Clock = fakedfu.NewSimClock()
	f, err := fakedfu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var desc, rec, cap bytes.Buffer
	if err := usb.WriteUmockdevDevice(&desc, f, umockdevSys, 1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := umockdevSession(t, usb.Record(f, &rec), cfg.Clock, 50); err != nil {
		t.Fatal(err)
	}
	p, err := usb.LoadPlayback(&rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := usb.WriteUsbmonPcap(p, &cap, 1, 2); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dpath, ppath := write("dfu.umockdev", desc.Bytes()), write("dfu.pcap", cap.Bytes())
	for _, tc := range []struct {
		seed string
		ok   bool
	}{{"50", true}, {"51", false}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, run, "--device", dpath, "--pcap", "/sys"+umockdevSys+"="+ppath,
			"--", os.Args[0], "-test.run", "^TestUmockdevChild$", "-test.v")
		cmd.Env = append(os.Environ(), umockdevChildEnv+"="+tc.seed)
		out, err := cmd.CombinedOutput()
		cancel()
		passed := err == nil && strings.Contains(string(out), "--- PASS: TestUmockdevChild")
		t.Logf("image seed %s under umockdev (passed %v):\n%s", tc.seed, passed, lastLines(string(out), 6))
		if passed != tc.ok {
			t.Fatalf("image seed %s under umockdev: passed %v, want %v (%v)\n%s", tc.seed, passed, tc.ok, err, out)
		}
	}
}

// TestUmockdevChild runs under umockdev-run only: the real gousb path against the replay.
func TestUmockdevChild(t *testing.T) {
	seed := os.Getenv(umockdevChildEnv)
	if seed == "" {
		t.Skip("runs under umockdev-run, started by TestUmockdevGousb")
	}
	usb.ControlTimeout = time.Second // a replay that does not match stalls rather than fails
	uctx := gousb.NewContext()
	defer uctx.Close()
	dev, err := usb.Open(uctx, usb.Match{Vendor: 0x0483, Product: 0xdf11})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	s, err := umockdevSession(t, dev, usb.RealClock{}, map[string]int64{"50": 50, "51": 51}[seed])
	if err != nil {
		t.Fatal(err)
	}
	if s.Blocks != 3 || s.Bytes != 3000 || s.Manifest != "dfuIDLE" {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("download through gousb+libusb under umockdev: %+v", s)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

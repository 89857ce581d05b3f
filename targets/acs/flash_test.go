package acs_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/targets/acs"
	"hilbench/targets/acs/sim"
)

// flashDevice starts one simulated device (modelling baud when non-zero) and opens it.
func flashDevice(tb testing.TB, baud int) (*sim.Device, *acs.Session) {
	tb.Helper()
	d, err := sim.Start(sim.Config{Name: "dut1", Dir: filepath.Join(tb.TempDir(), "dut1"),
		Profile: "../../fixtures/profiles/device.conf", Baud: baud, BootDelay: 10 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	if baud == 0 {
		baud = 115200
	}
	t := &bench.Target{Name: "dut1", Family: bench.FamilyACS, Console: bench.Console{Port: d.PortPath(), Baud: baud},
		ACS: &bench.ACSOptions{DataDir: d.DataDir()}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := acs.Open(ctx, t, "", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Sync(ctx); err != nil {
		tb.Fatal(err)
	}
	return d, s
}

func simImage(tb testing.TB, version string, size int) *flash.Image {
	tb.Helper()
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	path := filepath.Join(tb.TempDir(), version+".bin")
	if err := os.WriteFile(path, sim.BuildImage(version, payload), 0o644); err != nil {
		tb.Fatal(err)
	}
	img, err := flash.Load(path, "")
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

func TestFlashBootsTheNewVersion(t *testing.T) {
	d, s := flashDevice(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img := simImage(t, "acs-sim-9.9.9", 50<<10)
	var steps []string
	res, err := s.FlashWith(ctx, img, acs.FlashConfig{Timeout: 10 * time.Second}, device.FlashOptions{
		ExpectVersion: "acs-sim-9.9.9",
		Progress:      func(_, step string) { steps = append(steps, step) },
	})
	if err != nil {
		t.Fatalf("Flash: %v", err)
	}
	if res.Version != "acs-sim-9.9.9" || d.RunningVersion() != "acs-sim-9.9.9" || res.Digest != fmt.Sprintf("%x", img.SHA256) {
		t.Errorf("result %+v, device runs %q", res, d.RunningVersion())
	}
	if fmt.Sprint(steps) != "[enter_bootloader ymodem boot version]" {
		t.Errorf("steps %v", steps)
	}
}

func TestFlashRejectedImageIsAnError(t *testing.T) {
	d, s := flashDevice(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := d.RunningVersion()
	good := sim.BuildImage("acs-sim-bad", []byte("payload"))
	good[len(good)-1] ^= 1 // the trailing digest no longer matches
	path := filepath.Join(t.TempDir(), "bad.bin")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := flash.Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.FlashWith(ctx, img, acs.FlashConfig{Timeout: 10 * time.Second}, device.FlashOptions{})
	if err == nil || !errors.Is(err, acs.ErrImageRejected) {
		t.Fatalf("Flash of an invalid image = %v, want ErrImageRejected", err)
	}
	// Back to the firmware: the old slot is still the active one.
	if err := s.Console().Send(ctx, "boot\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v := d.RunningVersion(); v != before {
		t.Errorf("device runs %q after a rejected image, want %q", v, before)
	}
}

// BenchmarkFlashYModem921600 sends 256 KiB through the simulated boot ROM at a modelled 921600
// baud and reports the transfer's throughput as a share of the line rate (92160 B/s, 8N1), and
// turnaround-us: what each block takes beyond its own and its ACK's line time (1,029 + 1 bytes;
// stop and wait cannot beat 1,024/1,030 = 99.4% of the line rate). That is the harness's time
// from ACK to next block plus the ptys' and the simulated boot ROM's.
func BenchmarkFlashYModem921600(b *testing.B) {
	const baud = 921600
	_, s := flashDevice(b, baud)
	img := simImage(b, "acs-sim-bench", 256<<10)
	var share, bps float64
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := s.FlashWith(ctx, img, acs.FlashConfig{Timeout: 20 * time.Second}, device.FlashOptions{})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		bps = res.Transfer.Throughput
		share = bps / (baud / 10)
	}
	b.ReportMetric(bps, "B/s")
	b.ReportMetric(share*100, "line-%")
	b.ReportMetric((1024/bps-1030/float64(baud/10))*1e6, "turnaround-us")
}

// BenchmarkFlashYModemUnlimited is the same transfer without a modelled line rate: what the
// round trips through the ptys, the simulator and the console cost per block.
func BenchmarkFlashYModemUnlimited(b *testing.B) {
	_, s := flashDevice(b, 0)
	img := simImage(b, "acs-sim-bench", 256<<10)
	var bps float64
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := s.FlashWith(ctx, img, acs.FlashConfig{Timeout: 20 * time.Second}, device.FlashOptions{})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		bps = res.Transfer.Throughput
	}
	b.ReportMetric(bps, "B/s")
	b.ReportMetric(float64(time.Second)/(bps/1024)/float64(time.Microsecond), "us/block")
}

func TestFlashEntersByStrapAndPowerCycle(t *testing.T) {
	d, s := flashDevice(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var straps []bool
	cfg := acs.FlashConfig{
		Timeout:      10 * time.Second,
		EnterCommand: "false", // must not be used: the strap is the way in
		Strap: func(_ context.Context, on bool) error {
			straps = append(straps, on)
			d.SetBootStrap(on)
			return nil
		},
		PowerCycle: func(context.Context) error {
			if err := d.PowerOff(); err != nil {
				return err
			}
			return d.PowerOn()
		},
	}
	res, err := s.FlashWith(ctx, simImage(t, "acs-sim-strap", 8<<10), cfg, device.FlashOptions{ExpectVersion: "acs-sim-strap"})
	if err != nil {
		t.Fatalf("Flash by strap: %v", err)
	}
	if fmt.Sprint(straps) != "[true false]" || res.Version != "acs-sim-strap" || d.BootStrap() {
		t.Errorf("straps %v, version %q, strap left %v", straps, res.Version, d.BootStrap())
	}
}

func TestFlashWithoutPowerControlCannotUseTheStrap(t *testing.T) {
	_, s := flashDevice(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := acs.FlashConfig{Timeout: 2 * time.Second, Strap: func(context.Context, bool) error { return nil }}
	_, err := s.FlashWith(ctx, simImage(t, "x", 1024), cfg, device.FlashOptions{})
	if err == nil || !strings.Contains(err.Error(), "power control") {
		t.Errorf("Flash by strap without power control = %v", err)
	}
}

// The Session flashes with the bench's flash section, mapped once at Open (device.Flasher); a
// target without one is not flashable over its console.
func TestSessionFlashUsesTheBenchSettings(t *testing.T) {
	d, err := sim.Start(sim.Config{Name: "dut1", Dir: filepath.Join(t.TempDir(), "dut1"),
		Profile: "../../fixtures/profiles/device.conf", BootDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(f *bench.Flash) *acs.Session {
		tg := &bench.Target{Name: "dut1", Family: bench.FamilyACS, Console: bench.Console{Port: d.PortPath(), Baud: 115200},
			ACS: &bench.ACSOptions{DataDir: d.DataDir()}, Flash: f}
		s, err := acs.Open(ctx, tg, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}

	plain := open(nil)
	if _, err := plain.Flash(ctx, simImage(t, "x", 1024), device.FlashOptions{}); !errors.Is(err, device.ErrUnsupported) {
		t.Errorf("Flash without a flash section = %v, want ErrUnsupported", err)
	}
	if err := plain.PowerCycle(ctx); !errors.Is(err, device.ErrUnsupported) {
		t.Errorf("PowerCycle without a power section = %v, want ErrUnsupported", err)
	}
	plain.Close()

	// A load command the boot ROM does not know: the bench's value must be the one used.
	s := open(&bench.Flash{Method: bench.MethodYModem, Timeout: 3 * time.Second, LoadCommand: "loadz"})
	cfg, err := s.FlashConfig()
	if err != nil || cfg.LoadCommand != "loadz" || cfg.Timeout != 3*time.Second {
		t.Fatalf("FlashConfig = %+v, %v", cfg, err)
	}
	var f device.Flasher = s
	// The boot ROM's refusal comes back at once and is shown, not waited out.
	if _, err := f.Flash(ctx, simImage(t, "acs-sim-loadz", 4<<10), device.FlashOptions{}); err == nil || !strings.Contains(err.Error(), `"loadz"`) ||
		!strings.Contains(err.Error(), "Unknown command") {
		t.Fatalf("Flash with load command loadz = %v, want the boot ROM not to start receiving, and its answer", err)
	}
	s.Close()
	d.Reboot()

	s = open(&bench.Flash{Method: bench.MethodYModem, Timeout: 10 * time.Second})
	res, err := s.Flash(ctx, simImage(t, "acs-sim-7.7.7", 16<<10), device.FlashOptions{ExpectVersion: "acs-sim-7.7.7"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "acs-sim-7.7.7" || res.Attempts != 1 || res.Facts["ymodem_bytes_per_s"] == "" || d.RunningVersion() != "acs-sim-7.7.7" {
		t.Errorf("result %+v, device runs %q", res, d.RunningVersion())
	}
}

// Package simbench starts a simulated ACS bench: N simulated devices behind real pseudo-terminals,
// a development DAK, and a bench file that names them, so `hil sim`, `make demo` and the specs run
// the same code as a bench of real boards.
//
// # Concepts
//
//   - Dir layout: dak/ (development DAK and root, from softdak.InitDevelopment), device.conf (the
//     product profile the simulated firmware builds CSRs from), devices/dutN/ (each device's
//     storage), bench.yaml (the bench file), out/ (reports, transcripts, records).
//   - Reuse: starting again on the same Dir keeps the DAK and the devices' storage, as a real bench
//     keeps its boards.
package simbench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"hilbench/fixtures"
	"hilbench/harness/bench"
	"hilbench/harness/signer/softdak"
	"hilbench/targets/acs/sim"
	"hilbench/targets/simpower"
)

// Options shape the simulated bench.
type Options struct {
	Devices   int           // number of devices (default 1)
	Baud      int           // modelled line rate; 0 = unlimited
	BootDelay time.Duration // simulated boot time
	Profile   string        // device.conf to use; default: the embedded example profile
	// Feed > 0: each slot presents Feed fresh boards one after another (feed.go); 0: one board
	// per slot that stays.
	Feed        int
	InsertDelay time.Duration // feed: from a board's removal to the next one's insertion
	RemoveGrace time.Duration // feed: power off this long takes the board out
}

// Bench is a running simulated bench.
type Bench struct {
	Dir       string
	BenchFile string
	Bench     *bench.Bench
	Devices   []*sim.Device
	// Slots are the feeding slots (Options.Feed > 0), in target order; nil without feed.
	Slots []*Slot
	power []*simpower.Server
}

// Start starts the devices and writes Dir/bench.yaml.
func Start(dir string, opts Options) (*Bench, error) {
	if opts.Devices <= 0 {
		opts.Devices = 1
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dakDir := filepath.Join(dir, "dak")
	dakKey := filepath.Join(dakDir, "dak_private_key.pem")
	if _, err := os.Stat(dakKey); errors.Is(err, os.ErrNotExist) {
		if _, err := softdak.InitDevelopment(dakDir, softdak.InitOptions{}); err != nil {
			return nil, fmt.Errorf("making the simulated bench's development DAK: %w", err)
		}
	}
	profile := opts.Profile
	if profile == "" {
		profile = filepath.Join(dir, "device.conf")
		if err := os.WriteFile(profile, fixtures.DeviceConf, 0o644); err != nil {
			return nil, err
		}
	}
	var devs []*sim.Device
	for i := 1; i <= opts.Devices; i++ {
		name := fmt.Sprintf("dut%d", i)
		ddir := filepath.Join(dir, "devices", name)
		d, err := sim.Start(sim.Config{Name: name, Dir: ddir, Profile: profile, Baud: opts.Baud,
			BootDelay: opts.BootDelay, Serial: stableSerial(ddir)})
		if err != nil {
			for _, d := range devs {
				d.Close()
			}
			return nil, fmt.Errorf("starting simulated devices: %w", err)
		}
		devs = append(devs, d)
	}
	b := &bench.Bench{
		Signer: bench.SignerConfig{
			Type:        "softdak",
			Key:         dakKey,
			Certificate: filepath.Join(dakDir, "dak-certificate.pem"),
			Roots:       []string{filepath.Join(dakDir, "dev-root-ca.pem")},
		},
		Profile: bench.ProfileConfig{DeviceConf: profile, ValidityDays: 1825},
		Output:  filepath.Join(dir, "out"),
	}
	sb := &Bench{Dir: dir, BenchFile: filepath.Join(dir, "bench.yaml"), Bench: b, Devices: devs}
	for i, d := range devs {
		baud := opts.Baud
		if baud == 0 {
			baud = 115200
		}
		var ps *simpower.Server
		if opts.Feed > 0 {
			var sl *Slot
			sl, err = newSlot(d.Name(), d, opts.Feed, opts.InsertDelay, opts.RemoveGrace)
			if err == nil {
				sb.Slots = append(sb.Slots, sl)
				ps, err = sl.servePower()
			}
		} else {
			ps, err = d.ServePower()
		}
		if err != nil {
			sb.Close()
			return nil, err
		}
		sb.power = append(sb.power, ps)
		b.Targets = append(b.Targets, bench.Target{
			Name:    fmt.Sprintf("dut%d", i+1),
			Family:  "acs",
			Console: bench.Console{Port: d.PortPath(), Baud: baud},
			Power:   &bench.Power{Type: bench.PowerSim, Socket: ps.Path(), OffTime: 200 * time.Millisecond},
			ACS:     &bench.ACSOptions{DataDir: d.DataDir()},
			// The simulator's boot ROM: U-Boot-like, entered with reboot_bootloader.
			Flash: &bench.Flash{Method: bench.MethodYModem, FlashSize: SimFlashSize, Timeout: 30 * time.Second},
		})
	}
	if err := b.Write(sb.BenchFile); err != nil {
		sb.Close()
		return nil, err
	}
	// Read it back so callers hold exactly what a user's `--bench` would give them.
	if sb.Bench, err = bench.Load(sb.BenchFile); err != nil {
		sb.Close()
		return nil, fmt.Errorf("the simulated bench file does not load: %w", err)
	}
	return sb, nil
}

// Device returns the simulated device behind a target name.
func (b *Bench) Device(name string) (*sim.Device, error) {
	for i, t := range b.Bench.Targets {
		if t.Name == name {
			return b.Devices[i], nil
		}
	}
	return nil, fmt.Errorf("no simulated device %q", name)
}

// SimFlashSize is what a simulated device's firmware slot holds.
const SimFlashSize = 8 << 20

// Close stops every device; their storage stays in Dir.
func (b *Bench) Close() error {
	var errs []error
	for _, s := range b.Slots {
		s.stop()
	}
	for _, p := range b.power {
		errs = append(errs, p.Close())
	}
	for _, d := range b.Devices {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

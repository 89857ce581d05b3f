package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"hilbench/targets/acs/sim"
	"hilbench/targets/simbench"
)

const simUsage = `hil sim: simulated devices, firmware images and YubiKeys

  hil sim [--n N] [--modules M] [--external E] [--feed M] [flags]
                                  start simulated ACS devices (and ACK modules) on pseudo-terminals
                                  and write their bench files; Ctrl-C stops them (--feed: each ACS slot
                                  presents M fresh devices one after another, for hil station)
  hil sim image --version V --out FILE [--size N]
                                  a firmware image the simulated devices' boot ROM accepts
  hil sim yubikey [--state FILE] [--vpcd ADDR] [--serial N]
                                  plug a virtual YubiKey into pcscd (vpcd) until stopped
`

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim", "[--n N] [--modules M] [--external E] [flags]\n\nStart simulated ACS devices (and ACK modules) on pseudo-terminals and write their bench\nfiles; Ctrl-C stops them. Also: hil sim image, hil sim yubikey (each with -h).", stdout)
	n := fs.Int("n", 4, "number of simulated ACS devices")
	dir := fs.String("dir", "hil-sim", "directory for the devices' storage, the development DAK and the bench file")
	baud := fs.Int("baud", 0, "model this line rate on every console (0: as fast as the pty goes)")
	boot := fs.Duration("boot-delay", 300*time.Millisecond, "simulated boot time")
	profile := fs.String("profile", "", "product profile (device.conf) the simulated firmware uses (default: the example profile)")
	modules := fs.Int("modules", 0, "also simulate this many ACK modules (native mode), on a bench file of their own in DIR/ack")
	external := fs.Int("external", 0, "and this many ACK modules provisioned by the stand-in vendor tool (external mode)")
	feed := fs.Int("feed", 0, "each ACS slot presents this many fresh devices one after another (new storage and serial each) for hil station; a device leaves when its slot's power stays off (the plan's release: power_off)")
	insertDelay := fs.Duration("insert-delay", simbench.DefaultInsertDelay, "with --feed: from a device's removal to the next one's insertion")
	removeGrace := fs.Duration("remove-grace", simbench.DefaultRemoveGrace, "with --feed: power off this long takes the device out (longer than a power cycle's off time)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modules < 0 || *external < 0 || *modules+*external > 64 {
		return fmt.Errorf("%w: --modules and --external: 0 to 64 modules in all", errUsage)
	}
	if *feed < 0 || *feed > 100000 || *insertDelay <= 0 || *removeGrace <= 0 {
		return fmt.Errorf("%w: --feed: 0 to 100000 devices per slot; --insert-delay and --remove-grace must be positive", errUsage)
	}
	if *n < 1 || *n > 256 {
		return fmt.Errorf("%w: -n must be between 1 and 256", errUsage)
	}
	sb, err := simbench.Start(*dir, simbench.Options{Devices: *n, Baud: *baud, BootDelay: *boot, Profile: *profile,
		Feed: *feed, InsertDelay: *insertDelay, RemoveGrace: *removeGrace})
	if err != nil {
		return err
	}
	defer sb.Close()
	for i, t := range sb.Bench.Targets {
		fmt.Fprintf(stdout, "%-8s %s -> %s (serial %s)\n", t.Name, t.Console.Port, sb.Devices[i].PortPath(), sb.Devices[i].Serial())
	}
	if *modules+*external > 0 {
		ab, err := simbench.StartACK(filepath.Join(*dir, "ack"), simbench.ACKOptions{Modules: *modules, External: *external,
			Baud: *baud, BootDelay: *boot})
		if err != nil {
			return err
		}
		defer ab.Close()
		for i, t := range ab.Bench.Targets {
			fmt.Fprintf(stdout, "%-8s %s -> %s (ACK module, %s mode, DSN %s)\n", t.Name, t.Console.Port,
				ab.Modules[i].PortPath(), t.ACK.Mode, ab.Modules[i].DSN())
		}
		fmt.Fprintf(stdout, "ACK bench file: %s\n", ab.BenchFile)
	}
	fmt.Fprintf(stdout, "bench file: %s\n", sb.BenchFile)
	fmt.Fprintf(stdout, "simulating %d device(s) and %d module(s); stop with Ctrl-C\n", *n, *modules+*external)
	if *feed > 0 {
		fmt.Fprintf(stdout, "feeding %d device(s) per slot; a device leaves when its slot's power stays off for %s\n", *feed, *removeGrace)
		go func() {
			for _, s := range sb.Slots {
				select {
				case <-s.Done():
				case <-ctx.Done():
					return
				}
			}
			fmt.Fprintf(stdout, "every slot has presented its %d device(s)\n", *feed)
		}()
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping simulated devices")
	return nil
}

// cmdSimImage writes a firmware image the simulated devices' boot ROM accepts.
func cmdSimImage(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim image", "--version V --out FILE [--size N]\n\nWrite a firmware image the simulated devices' boot ROM accepts.", stdout)
	version := fs.String("version", "", "firmware version the image carries (required)")
	out := fs.String("out", "", "image file to write (required)")
	size := fs.Int("size", 256<<10, "payload bytes (random)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *version == "" || *out == "" || *size < 0 || *size > 32<<20 {
		return fmt.Errorf("%w: hil sim image --version V --out FILE [--size N (0..32 MiB)]", errUsage)
	}
	payload := make([]byte, *size)
	if _, err := rand.Read(payload); err != nil {
		return err
	}
	img := sim.BuildImage(*version, payload)
	if err := os.WriteFile(*out, img, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: simulator firmware %s, %d bytes\n", *out, *version, len(img))
	return nil
}

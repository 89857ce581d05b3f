package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"hilbench/targets/simbench"
)

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim", stderr)
	n := fs.Int("n", 4, "number of simulated ACS devices")
	dir := fs.String("dir", "hil-sim", "directory for the devices' storage, the development DAK and the bench file")
	baud := fs.Int("baud", 0, "model this line rate on every console (0: as fast as the pty goes)")
	boot := fs.Duration("boot-delay", 300*time.Millisecond, "simulated boot time")
	profile := fs.String("profile", "", "product profile (device.conf) the simulated firmware uses (default: the example profile)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 256 {
		return fmt.Errorf("%w: -n must be between 1 and 256", errUsage)
	}
	sb, err := simbench.Start(*dir, simbench.Options{Devices: *n, Baud: *baud, BootDelay: *boot, Profile: *profile})
	if err != nil {
		return err
	}
	defer sb.Close()
	for i, t := range sb.Bench.Targets {
		fmt.Fprintf(stdout, "%-8s %s -> %s\n", t.Name, t.Console.Port, sb.Devices[i].PortPath())
	}
	fmt.Fprintf(stdout, "bench file: %s\n", sb.BenchFile)
	fmt.Fprintf(stdout, "simulating %d device(s); stop with Ctrl-C\n", *n)
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping simulated devices")
	return nil
}

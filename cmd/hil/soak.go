package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/harness/ledger"
	"hilbench/harness/power"
	"hilbench/harness/soak"
	"hilbench/harness/station"
)

// soakAfterStep is a test seam: tests change a simulated device's storage between steps. It is
// keyed by the first bench file so that soaks running in parallel (tests) each see only their own
// hook (func(target string, cycle int, step string)).
var soakAfterStep sync.Map

// benchList is a repeatable --bench: `hil sim` writes one bench file for ACS devices and one
// for ACK modules, and a soak runs them together.
type benchList []string

func (b *benchList) String() string     { return strings.Join(*b, ",") }
func (b *benchList) Set(v string) error { *b = append(*b, v); return nil }

func cmdSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("soak", "--bench FILE [--bench FILE...] --cycles N [--faults power_cut,noise] [--seed S] [flags]\n\n"+
		"Provision every target once, then loop verify, reboot, factory reset, reflash (with --image),\n"+
		"power cycle and power cut on all of them in parallel, checking each identity against the\n"+
		"ledger after every step. On simulated targets (power type sim) the faults are injected\n"+
		"through the simulator's power socket; on hardware only verify, reboot and power cycle run\n"+
		"unless --destructive. Writes soak.json, soak-junit.xml and soak.html. Exit status 1 when a\n"+
		"chain was torn or changed, a device key was signed twice, the ledger is inconsistent or a\n"+
		"target could not be provisioned (with --strict: also when a step failed after its retries).", stdout)
	var benches benchList
	fs.Var(&benches, "bench", "bench file (YAML); repeat for several benches")
	cycles := fs.Int("cycles", 10, "cycles per target")
	faults := fs.String("faults", "", "faults to inject on simulated targets, comma separated: "+strings.Join(soak.KnownFaults(), ", "))
	seed := fs.Uint64("seed", 0, "seed of every random choice (0: a random seed, named in the report)")
	destructive := fs.Bool("destructive", false, "on hardware also factory reset, reflash and power cut")
	out := fs.String("out", "", "output directory (default: the first bench's output, runs/<time>-soak)")
	image := fs.String("image", "", "firmware image to reflash in every cycle (targets that flash over their console)")
	expect := fs.String("expect-version", "", "the version the flashed firmware must report")
	retries := fs.Int("retries", 2, "retries of a step that failed for an ordinary reason (never of an identity failure)")
	noise := fs.Float64("noise-rate", 1e-4, "byte error rate of the noise fault")
	every := fs.Int("progress-every", 10, "a progress line on stderr every this many cycles")
	stepTimeout := fs.Duration("step-timeout", 3*time.Minute, "time one attempt of one step may take")
	readTimeout := fs.Duration("read-timeout", time.Minute, "time one read of a chain may take (a boot after a power cut included)")
	strict := fs.Bool("strict", false, "exit status 1 also when a step failed after its retries")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(benches) == 0 {
		return fmt.Errorf("%w: --bench FILE is required", errUsage)
	}
	if *cycles < 1 {
		return fmt.Errorf("%w: --cycles must be at least 1", errUsage)
	}
	if *retries < 0 || *every < 1 || *noise < 0 || *noise > 1 || *stepTimeout <= 0 || *readTimeout <= 0 {
		return fmt.Errorf("%w: --retries >= 0, --progress-every >= 1, --noise-rate 0..1, --step-timeout and --read-timeout > 0", errUsage)
	}
	var faultList []string
	for f := range strings.SplitSeq(*faults, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		known := false
		for _, k := range soak.KnownFaults() {
			known = known || k == f
		}
		if !known {
			return fmt.Errorf("%w: --faults: unknown fault %q (known: %s)", errUsage, f, strings.Join(soak.KnownFaults(), ", "))
		}
		faultList = append(faultList, f)
	}
	if *seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		*seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	cfg := soak.Config{Cycles: *cycles, Faults: faultList, Seed: *seed, NoiseRate: *noise, Destructive: *destructive,
		Retries: *retries, ExpectVersion: *expect, StepTimeout: *stepTimeout, ReadTimeout: *readTimeout, Progress: stderr, ProgressEvery: *every,
	}
	if h, ok := soakAfterStep.Load(benches[0]); ok {
		cfg.AfterStep = h.(func(target string, cycle int, step string))
	}
	if *retries == 0 {
		cfg.Retries = -1 // soak.Config: 0 is the default
	}
	if *image != "" {
		img, err := flash.Load(*image, "")
		if err != nil {
			return err
		}
		cfg.Image = img
	}

	start := time.Now()
	var tgts []soak.Target
	names := map[string]string{}
	var dir string
	for i, file := range benches {
		b, err := bench.Load(file)
		if err != nil {
			return err
		}
		if i == 0 {
			if *out == "" {
				if dir, err = runDir(b.Output, "soak", start); err != nil {
					return err
				}
			} else {
				dir = *out
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
		}
		st, err := station.Open(ctx, b, time.Now())
		if err != nil {
			return err
		}
		defer st.Close()
		printProfileNotes(stderr, st.Profile)
		st.SetRun(filepath.Base(dir))
		var lg ledger.Store
		if st.Pipeline != nil {
			lg = st.Pipeline.Ledger
		} else { // an agent signs: read its ledger (SQLite and PostgreSQL take several processes)
			if lg, err = ledger.Open(ctx, b.Ledger, b.Output); err != nil {
				return err
			}
			defer lg.Close()
		}
		env, err := deviceEnv(b, st, dir)
		if err != nil {
			return err
		}
		for j := range b.Targets {
			t := &b.Targets[j]
			if other, ok := names[t.Name]; ok {
				return fmt.Errorf("target %s is in %s and in %s: transcripts and the report need unique names", t.Name, other, file)
			}
			names[t.Name] = file
			tg := soak.Target{
				Name: t.Name, Family: t.Family, Issuer: st.Issuer, Ledger: lg,
				Open:       func(ctx context.Context) (device.Device, error) { return openDevice(ctx, t, env) },
				Transcript: filepath.Join(dir, t.Name+".transcript"),
			}
			if t.Power != nil {
				pw, err := power.ForTarget(t)
				if err != nil {
					return err
				}
				defer power.Close(pw)
				tg.Power, tg.OffTime = pw, t.Power.OffTime
				if t.Power.Type == bench.PowerSim {
					// A simulator serves its power switch; the same socket takes fault requests.
					tg.Sim = &soak.SimSocket{Path: t.Power.Socket}
				}
			}
			tgts = append(tgts, tg)
		}
	}
	for _, tg := range tgts {
		if tg.Sim == nil && len(faultList) > 0 {
			fmt.Fprintf(stderr, "note: %s is not simulated: faults are injected only on simulated targets (power type sim)\n", tg.Name)
		}
	}
	fmt.Fprintf(stdout, "soaking %d target(s) for %d cycles, seed %d, faults: %s; report in %s\n",
		len(tgts), *cycles, *seed, orNone(faultList), dir)
	rep, err := soak.Run(ctx, cfg, tgts)
	if rep == nil {
		return err
	}
	if werr := rep.WriteFiles(dir); werr != nil {
		return werr
	}
	c := rep.Counters
	fmt.Fprintf(stdout, "torn_chains %d, changed_chains %d, double_signatures %d, ledger_inconsistencies %d\n",
		c.TornChains, c.ChangedChains, c.DoubleSignatures, c.LedgerInconsistencies)
	fmt.Fprintf(stdout, "%d steps, %d failed after retries, %d retries, %d flakes, %d target(s) not provisioned, in %v\n",
		c.Runs, c.StepFailures, c.Retries, c.Flakes, c.ProvisionFailures, time.Since(start).Round(time.Second))
	for _, s := range rep.Steps {
		fmt.Fprintf(stdout, "  %-14s runs %6d  failures %4d  retries %4d  flake rate %6.2f%%  p50 %8.1f ms  p99 %8.1f ms\n",
			s.Step, s.Runs, s.Failures, s.Retries, 100*s.FlakeRate, s.P50ms, s.P99ms)
	}
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(dir, "soak.html"))
	if err != nil {
		return err
	}
	if rep.Failed(*strict) {
		return fmt.Errorf("soak failed (seed %d): see %s", *seed, filepath.Join(dir, "soak.json"))
	}
	return nil
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ",")
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/flash"
	"hilbench/harness/power"
	"hilbench/harness/report"
	"hilbench/targets/acs"
)

func cmdFlash(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("flash", stderr)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	target := fs.String("target", "", "the target to flash")
	format := fs.String("format", "", "image format: raw, ihex or dfu (default: by extension)")
	expect := fs.String("expect-version", "", "the version the new firmware must report once booted")
	out := fs.String("out", "", "output directory (default: the bench file's output)")
	unprotect := fs.Bool("unprotect", false, "DfuSe: lift the device's read protection first (this erases all of its flash)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: hil flash --bench FILE --target NAME [flags] IMAGE (one image)", errUsage)
	}
	if *benchFile == "" || *target == "" {
		return fmt.Errorf("%w: --bench FILE and --target NAME are required", errUsage)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	t, err := b.Target(*target)
	if err != nil {
		return err
	}
	if t.Flash == nil {
		return fmt.Errorf("target %s has no flash section in %s: say how it is flashed (method ymodem or dfu)", t.Name, b.Path)
	}
	if *unprotect && t.Flash.Method != bench.MethodDFU {
		return fmt.Errorf("%w: --unprotect is for DfuSe devices (method dfu); target %s is flashed by %s", errUsage, t.Name, t.Flash.Method)
	}
	if *out == "" {
		*out = b.Output
	}
	img, err := flash.Load(fs.Arg(0), *format)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", t.Name, img.Summary())
	if t.Flash.FlashSize > 0 {
		if err := img.CheckFits(t.Flash.FlashSize); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
	}

	start := time.Now()
	dir, err := runDir(*out, "flash", start)
	if err != nil {
		return err
	}
	prog := &progress{w: stdout, start: start}
	rep := report.New("flash", start)
	forEach(ctx, []*bench.Target{t}, 1, rep, "flash", func(ctx context.Context, t *bench.Target, o *report.Outcome) error {
		o.Facts["image"] = img.Path
		o.Facts["image_sha256"] = fmt.Sprintf("%x", img.SHA256)
		o.Facts["image_bytes"] = strconv.Itoa(len(img.Data))
		var err error
		switch t.Flash.Method {
		case bench.MethodYModem:
			err = flashYModem(ctx, t, img, *expect, dir, prog, stdout, o)
		case bench.MethodDFU:
			err = flashDFU(ctx, t, img, *unprotect, prog, stdout, o)
		default:
			err = fmt.Errorf("unknown flash method %q", t.Flash.Method)
		}
		if err == nil {
			prog.step(t.Name, "flashed and verified")
		} else {
			prog.step(t.Name, "FAILED: "+err.Error())
		}
		return err
	})
	return finish(rep, dir, stdout)
}

func flashYModem(ctx context.Context, t *bench.Target, img *flash.Image, expect, dir string, prog *progress, stdout io.Writer, o *report.Outcome) error {
	if t.Family != bench.FamilyACS {
		return fmt.Errorf("flash method ymodem goes through a shell console; target %s is family %s", t.Name, t.Family)
	}
	s, err := acs.Open(ctx, t, dir, console.NewRedactor())
	if err != nil {
		return err
	}
	defer s.Close()
	cfg, release, err := flashConfig(t)
	if err != nil {
		return err
	}
	defer release()
	var bar *flash.Bar
	res, err := s.Flash(ctx, img, cfg, acs.FlashOptions{
		ExpectVersion: expect,
		Progress: func(target, step string) {
			if bar != nil {
				bar.Finish()
				bar = nil
			}
			prog.step(target, step)
			if step == acs.StepTransfer {
				bar = flash.NewBar(stdout, target, int64(len(img.Data)))
			}
		},
		Transfer: func(sent, total int64) {
			if bar != nil {
				bar.Update(sent)
			}
		},
		Note: func(format string, a ...any) { prog.step(t.Name, fmt.Sprintf(format, a...)) },
	})
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	o.Facts["version"] = res.Version
	o.Facts["device_sha256"] = res.Digest
	o.Facts["transfers"] = strconv.Itoa(res.Attempts)
	o.Facts["ymodem_bytes_per_s"] = fmt.Sprintf("%.0f", res.Transfer.Throughput)
	o.Facts["ymodem_retransmissions"] = strconv.Itoa(res.Transfer.Retransmits)
	fmt.Fprintf(stdout, "%s: running %q; bootloader digest %s matches the image; %d transfer(s), %.1f KiB/s\n",
		t.Name, res.Version, res.Digest, res.Attempts, res.Transfer.Throughput/1024)
	return nil
}

// flashConfig turns a bench target's flash section into the driver's settings. release frees the
// power control it opened.
func flashConfig(t *bench.Target) (acs.FlashConfig, func(), error) {
	f := t.Flash
	cfg := acs.FlashConfig{
		EnterCommand: f.EnterCommand, LoadCommand: f.LoadCommand, BootCommand: f.BootCommand,
		VersionCommand: f.VersionCommand, Timeout: f.Timeout,
	}
	release := func() {}
	if f.Prompt != "" {
		re, err := regexp.Compile(f.Prompt)
		if err != nil {
			return cfg, release, fmt.Errorf("target %s: flash.prompt: %w", t.Name, err)
		}
		cfg.Prompt = re
	}
	if t.Power != nil {
		pw, err := power.ForTarget(t)
		if err != nil {
			return cfg, release, err
		}
		cfg.PowerCycle = pw.Cycle
		release = func() { _ = power.Close(pw) }
	}
	if f.Enter == bench.EnterStrap {
		cfg.Strap = func(ctx context.Context, on bool) error {
			cmd := f.StrapOff
			if on {
				cmd = f.StrapOn
			}
			return runHostCommand(ctx, t.Name, cmd)
		}
	}
	return cfg, release, nil
}

// runHostCommand runs a bench-file command on the station (sh -c) and names it when it fails.
func runHostCommand(ctx context.Context, target, command string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(command, "{target}", target))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %w: %s", command, err, strings.TrimSpace(string(out)))
	}
	return nil
}

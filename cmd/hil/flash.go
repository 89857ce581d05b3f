package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/harness/report"
	"hilbench/targets"
)

func cmdFlash(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("flash", "--bench FILE --target NAME [--expect-version V] [flags] IMAGE\n\nWrite a firmware image (raw, Intel HEX, .dfu) over the console (YMODEM) or USB DFU and\ncheck the new firmware booted. Exit status 1 when the flash failed.", stdout)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	target := fs.String("target", "", "the target to flash")
	format := fs.String("format", "", "image format: raw, ihex or dfu (default: by extension)")
	expect := fs.String("expect-version", "", "the version the new firmware must report once booted")
	out := fs.String("out", "", "output directory (default: the bench file's output)")
	unprotect := fs.Bool("unprotect", false, "DfuSe: lift the device's read protection first (this erases all of its flash)")
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
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
			err = flashSerial(ctx, t, img, *expect, dir, prog, stdout, o)
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

// flashSerial flashes through the device's own link (its console's bootloader): any device that
// is a device.Flasher, with the bench's flash settings its driver mapped at open.
func flashSerial(ctx context.Context, t *bench.Target, img *flash.Image, expect, dir string, prog *progress, stdout io.Writer, o *report.Outcome) error {
	d, err := openDevice(ctx, t, targets.Env{Dir: dir})
	if err != nil {
		return err
	}
	defer d.Close()
	defer func() { statsFacts(o, d.Stats()) }()
	f, ok := d.(device.Flasher)
	if !ok {
		return fmt.Errorf("target %s (%s) cannot be flashed over its console: %w", t.Name, t.Family, device.ErrUnsupported)
	}
	var bar *flash.Bar
	res, err := f.Flash(ctx, img, device.FlashOptions{
		ExpectVersion: expect,
		Progress: func(target, step string) {
			if bar != nil {
				bar.Finish()
				bar = nil
			}
			prog.step(target, step)
		},
		Transfer: func(sent, total int64) {
			if bar == nil {
				bar = flash.NewBar(stdout, t.Name, total)
			}
			bar.Update(sent)
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
	for k, v := range res.Facts {
		o.Facts[k] = v
	}
	fmt.Fprintf(stdout, "%s: running %q; the device's digest %s matches the image; %d transfer(s) in %v\n",
		t.Name, res.Version, res.Digest, res.Attempts, res.Duration.Round(time.Millisecond))
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"hilbench/harness/bench"
	"hilbench/harness/factory/devices"
	"hilbench/harness/factory/label"
	"hilbench/harness/factory/outdir"
	"hilbench/harness/factory/setuppin"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
)

const labelsSynopsis = `--bench FILE (--device ID | --all) --out DIR [--unverified]

Make the FFS product label of verified devices (with --unverified: also devices whose chain was
issued, by hil sign, but not read back) from their ledger records: the 2D barcode
payload of the bench's factory.labels.template ({serial}: the device's serial/DSN, {puk}: the
compressed DHA public key from the recorded chain, {pin}: the device's setup PIN, made once
and kept in the ledger) as a Data Matrix, the serial as Code 128 and as text; <serial>.png and
<serial>.svg in DIR at factory.labels.module_size dots a module and factory.labels.dpi.
The Data Matrix is 36x36 (the FFS manufacturing guide) when the payload fits, else the
smallest square that does, with a warning. All labels are made before any is written; a
device that cannot be labelled (no serial, a payload too big) writes none.`

func cmdLabels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("labels", labelsSynopsis, stdout)
	benchFile := fs.String("bench", "", "bench file (YAML): the ledger and factory.labels")
	dev := fs.String("device", "", "the device to label: its serial/DSN or device key")
	all := fs.Bool("all", false, "label every verified device in the ledger")
	out := fs.String("out", "", "directory the labels go to")
	unverified := fs.Bool("unverified", false, "also devices whose chain was issued (hil sign) but not read back from the device")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *benchFile == "":
		return fmt.Errorf("%w: --bench FILE is required", errUsage)
	case (*dev == "") == !*all:
		return fmt.Errorf("%w: give --device ID or --all", errUsage)
	case *out == "":
		return fmt.Errorf("%w: --out DIR is required", errUsage)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	lc := b.Factory.Labels
	if lc.Template == "" {
		return fmt.Errorf("bench %s has no factory.labels.template: the label's payload comes from it", *benchFile)
	}
	opts := label.Options{ModuleSize: lc.ModuleSize, DPI: lc.DPI}
	if opts.ModuleSize == 0 {
		opts.ModuleSize = bench.DefaultModuleSize
	}
	if opts.DPI == 0 {
		opts.DPI = bench.DefaultDPI
	}
	lg, err := ledger.Open(ctx, b.Ledger, b.Output)
	if err != nil {
		return err
	}
	defer lg.Close()
	var devs []devices.Device
	if *all {
		if devs, err = devices.All(ctx, lg, which(*unverified)); err != nil {
			return err
		}
	} else {
		d, err := devices.One(ctx, lg, *dev, which(*unverified))
		if err != nil {
			return err
		}
		devs = []devices.Device{d}
	}
	if len(devs) == 0 {
		fmt.Fprintf(stdout, "no devices in the ledger %s (see --unverified): no labels\n", lg.Describe())
		return nil
	}
	var files []outdir.File
	// One line per distinct warning, not per label: a batch's payloads are mostly alike.
	var warnings []string
	count := map[string]int{}
	for i := range devs {
		f, warn, err := makeLabel(ctx, lg, &devs[i], lc.Template, opts)
		if err != nil {
			return err
		}
		files = append(files, f...)
		if warn != "" {
			if count[warn] == 0 {
				warnings = append(warnings, warn)
			}
			count[warn]++
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s (%d of %d labels)\n", w, count[w], len(devs))
	}
	if err := outdir.Write(*out, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d labels (PNG and SVG) written to %s\n", len(devs), *out)
	return nil
}

// makeLabel makes one device's label files. The setup PIN is recorded in the ledger before it
// is printed anywhere, and goes nowhere but into the label.
func makeLabel(ctx context.Context, lg ledger.Store, d *devices.Device, tmpl string, opts label.Options) ([]outdir.File, string, error) {
	if d.ID() == "" {
		return nil, "", fmt.Errorf("%s: the device reported no serial/DSN; its label needs one (Code 128 and text)", d.Name())
	}
	puk, err := pki.CompressedPublicKey(d.Leaf().PublicKey)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", d.Name(), err)
	}
	pin, err := lg.SetupPIN(ctx, d.Key(), setuppin.New)
	if err != nil {
		return nil, "", err
	}
	if err := setuppin.Check(pin); err != nil {
		return nil, "", fmt.Errorf("%s: the ledger's setup PIN: %w", d.Name(), err)
	}
	payload, err := label.Payload(tmpl, label.Values{Serial: d.ID(), PUK: puk, PIN: pin})
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", d.Name(), err)
	}
	lb, err := label.New(payload, d.ID())
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", d.Name(), err)
	}
	png, err := lb.PNG(opts)
	if err != nil {
		return nil, "", err
	}
	svg, err := lb.SVG(opts)
	if err != nil {
		return nil, "", err
	}
	base := labelFileName(d)
	return []outdir.File{{Name: base + ".png", Data: png}, {Name: base + ".svg", Data: svg}}, lb.Matrix.Warning, nil
}

// which is the records a command's --unverified flag selects.
func which(unverified bool) devices.Which {
	if unverified {
		return devices.Unverified
	}
	return devices.Verified
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// labelFileName is the serial when it makes a safe file name, else the ledger record's id.
func labelFileName(d *devices.Device) string {
	if safeName.MatchString(d.ID()) && len(d.ID()) <= 100 {
		return d.ID()
	}
	return "record-" + strconv.FormatInt(d.Record.ID, 10)
}

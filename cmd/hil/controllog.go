package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/factory/controllog"
	"hilbench/harness/factory/devices"
	"hilbench/harness/factory/outdir"
	"hilbench/harness/ledger"
)

const controlLogSynopsis = `--bench FILE --format ffs|sidewalk --out DIR [--unverified]

Write the control log of the verified devices in the ledger (with --unverified: also devices
whose chain was issued, by hil sign, but not read back) that no log in DIR lists yet
(one batch a run; nothing when there are none), with a SHA-256 file beside it:
  ffs       FFS_CONTROL_LOG_<yyyyMMddhhmmss>.json: each device's serial/DSN, the product
            (factory.device_type) and its DHA public key as the FFS provisioning guide gives
            it for the control log (docs/schemas/ffs-control-log.schema.json)
  sidewalk  C_CONTROL_LOG_<yyyyMMddhhmmss>.txt: version 4-0-1, each device's SMSN (from
            factory.device_type, factory.sidewalk.stage, its DSN and factory.sidewalk.apid),
            the APID and its certificate chain (docs/schemas/sidewalk-control-log.schema.json)
The log and its .sha256 file are written whole or not at all.`

func cmdControlLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("control-log", controlLogSynopsis, stdout)
	benchFile := fs.String("bench", "", "bench file (YAML): the ledger and the factory settings")
	format := fs.String("format", "", "ffs or sidewalk")
	out := fs.String("out", "", "directory of the control logs")
	unverified := fs.Bool("unverified", false, "also devices whose chain was issued (hil sign) but not read back from the device")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *benchFile == "":
		return fmt.Errorf("%w: --bench FILE is required", errUsage)
	case !slices.Contains(controllog.Formats, *format):
		return fmt.Errorf("%w: --format %q: want %s", errUsage, *format, strings.Join(controllog.Formats, " or "))
	case *out == "":
		return fmt.Errorf("%w: --out DIR is required", errUsage)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	cfg := controllog.Config{DeviceType: b.Factory.DeviceType, APID: b.Factory.Sidewalk.APID, Stage: b.Factory.Sidewalk.Stage}
	if cfg.Stage == "" {
		cfg.Stage = bench.DefaultSidewalkStage
	}
	lg, err := ledger.Open(ctx, b.Ledger, b.Output)
	if err != nil {
		return err
	}
	defer lg.Close()
	devs, err := devices.All(ctx, lg, which(*unverified))
	if err != nil {
		return err
	}
	batch, err := controllog.Make(*format, devs, cfg, *out, time.Now())
	if err != nil {
		return err
	}
	if batch.Devices == 0 {
		fmt.Fprintf(stdout, "no new devices: %d in the ledger, all in earlier logs in %s; nothing written\n", batch.Skipped, *out)
		return nil
	}
	if err := outdir.Write(*out, batch.Files()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d devices (%d already in earlier logs), SHA-256 in %s.sha256\n",
		filepath.Join(*out, batch.Name), batch.Devices, batch.Skipped, batch.Name)
	return nil
}

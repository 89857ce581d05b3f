package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"hilbench/harness/bench"
	"hilbench/harness/factory/controllog"
	"hilbench/harness/factory/reconcile"
)

const reconcileSynopsis = `--serials FILE.csv --logs DIR [--bench FILE] [--json]

Check a contract manufacturer's serial-number CSV against the Sidewalk control logs in DIR,
as AWS IoT Core for Amazon Sidewalk does at import: every SMSN in the CSV has exactly one
control-log entry and every entry is in the CSV; duplicates; an APID other than the row's or
the bench's (factory.sidewalk.apid); a device type other than the bench's
(factory.device_type); a row whose device type, DSN and APID do not hash to its SMSN; a log
whose .sha256 file does not match. The CSV has a header naming its columns (smsn, and any of
dsn, device_type, apid, stage) or holds SMSNs alone, one a line.
Exit status 1 on any mismatch (the report says which), or when the CSV is malformed (the
error names the line).`

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reconcile", reconcileSynopsis, stdout)
	serials := fs.String("serials", "", "the serial-number CSV")
	logs := fs.String("logs", "", "directory of the Sidewalk control logs (C_CONTROL_LOG_*.txt)")
	benchFile := fs.String("bench", "", "bench file (YAML): the expected APID and device type")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *serials == "" || *logs == "" {
		return fmt.Errorf("%w: --serials FILE.csv and --logs DIR are required", errUsage)
	}
	var want reconcile.Expect
	if *benchFile != "" {
		b, err := bench.Load(*benchFile)
		if err != nil {
			return err
		}
		want = reconcile.Expect{DeviceType: b.Factory.DeviceType, APID: b.Factory.Sidewalk.APID, Stage: b.Factory.Sidewalk.Stage}
	}
	f, err := os.Open(*serials)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := reconcile.ReadCSV(f, *serials)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(*logs); err != nil {
		return fmt.Errorf("control logs: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("control logs: %s is not a directory", *logs)
	}
	files, err := controllog.ReadDir(controllog.FormatSidewalk, *logs)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no Sidewalk control logs (C_CONTROL_LOG_<yyyyMMddhhmmss>.txt) in %s", *logs)
	}
	rep := reconcile.Check(rows, files, want, *serials)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("reconcile: %d problems between %s and the control logs in %s", len(rep.Problems), *serials, *logs)
	}
	return nil
}

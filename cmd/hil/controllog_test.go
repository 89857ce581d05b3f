package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// jsonschema validates a document against a schema of docs/schemas with Debian's
// python3-jsonschema.
func jsonschema(t *testing.T, schema, doc string) error {
	t.Helper()
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import jsonschema").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Fatal("no python3 with jsonschema: install python3-jsonschema (scripts/deps.sh)")
	}
	out, err := exec.Command(py, "-W", "ignore", "-m", "jsonschema", "-i", doc, filepath.Join("../../docs/schemas", schema)).CombinedOutput()
	if err != nil {
		return errors.New(string(out))
	}
	return nil
}

// opensslSMSN is the SMSN of the notes' formula, computed by openssl.
func opensslSMSN(t *testing.T, s string) string {
	t.Helper()
	cmd := exec.Command("openssl", "dgst", "-sha256", "-r")
	cmd.Stdin = strings.NewReader(s)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(strings.Fields(string(out))[0])
}

// TestControlLogsAndReconcile: the Sidewalk and FFS control logs of provisioned modules validate
// against their schemas and carry SHA-256 files sha256sum accepts; a second run writes nothing;
// hil reconcile matches a CSV of the SMSNs openssl computes, and reports (exit status 1) a CSV
// that lacks one or names another APID; a malformed CSV names its line.
func TestControlLogsAndReconcile(t *testing.T) {
	t.Parallel()
	sb := factoryBench(t, 3, factorySection)
	recs := verifiedRecords(t, sb)
	logs := filepath.Join(t.TempDir(), "logs")
	out, err := hil(t, "control-log", "--bench", sb.BenchFile, "--format", "sidewalk", "--out", logs)
	if err != nil || !strings.Contains(out, ": 3 devices") {
		t.Fatalf("control-log sidewalk: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(logs, "C_CONTROL_LOG_*.txt"))
	if len(files) != 1 {
		t.Fatalf("logs %v", files)
	}
	if err := jsonschema(t, "sidewalk-control-log.schema.json", files[0]); err != nil {
		t.Errorf("schema: %v", err)
	}
	sum := exec.Command("sha256sum", "-c", filepath.Base(files[0])+".sha256")
	sum.Dir = logs
	if o, err := sum.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, o)
	}
	if out, err := hil(t, "control-log", "--bench", sb.BenchFile, "--format", "sidewalk", "--out", logs); err != nil || !strings.Contains(out, "no new devices") {
		t.Errorf("second run: %v\n%s", err, out)
	}
	ffs := filepath.Join(t.TempDir(), "ffs")
	if out, err := hil(t, "control-log", "--bench", sb.BenchFile, "--format", "ffs", "--out", ffs); err != nil {
		t.Fatalf("control-log ffs: %v\n%s", err, out)
	}
	ffsFiles, _ := filepath.Glob(filepath.Join(ffs, "FFS_CONTROL_LOG_*.json"))
	if len(ffsFiles) != 1 {
		t.Fatalf("ffs logs %v", ffsFiles)
	}
	if err := jsonschema(t, "ffs-control-log.schema.json", ffsFiles[0]); err != nil {
		t.Errorf("ffs schema: %v", err)
	}

	dir := t.TempDir()
	csv := "smsn,dsn,device_type,apid\n"
	for _, r := range recs {
		csv += opensslSMSN(t, "A17XHX23H06INH-PRODUCTION"+r.DeviceID+"pd25") + "," + r.DeviceID + ",A17XHX23H06INH,pd25\n"
	}
	good := filepath.Join(dir, "serials.csv")
	os.WriteFile(good, []byte(csv), 0o644)
	if out, err := hil(t, "reconcile", "--serials", good, "--logs", logs, "--bench", sb.BenchFile); err != nil || !strings.HasPrefix(out, "MATCH: 3 SMSNs") {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	lines := strings.SplitAfter(csv, "\n")
	short := filepath.Join(dir, "short.csv")
	os.WriteFile(short, []byte(strings.Join(lines[:3], "")), 0o644)
	out, err = hil(t, "reconcile", "--serials", short, "--logs", logs)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(out, "MISMATCH") || !strings.Contains(out, "missing_in_csv") {
		t.Errorf("a CSV without one SMSN: %v\n%s", err, out)
	}
	apid := filepath.Join(dir, "apid.csv")
	os.WriteFile(apid, []byte(strings.Replace(csv, ",pd25\n", ",pd26\n", 1)), 0o644)
	out, err = hil(t, "reconcile", "--serials", apid, "--logs", logs, "--bench", sb.BenchFile)
	if err == nil || !strings.Contains(out, "apid_mismatch") {
		t.Errorf("a CSV naming another APID: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte(csv+"nothex,x,y,z\n"), 0o644)
	if _, err := hil(t, "reconcile", "--serials", bad, "--logs", logs); err == nil || !strings.Contains(err.Error(), "bad.csv:5") {
		t.Errorf("malformed CSV: %v, want it to name bad.csv:5", err)
	}
	if _, err := hil(t, "reconcile", "--serials", good, "--logs", ffs); err == nil || !strings.Contains(err.Error(), "no Sidewalk control logs") {
		t.Errorf("no logs: %v", err)
	}
	if _, err := hil(t, "reconcile", "--serials", good); !errors.Is(err, errUsage) {
		t.Errorf("no --logs: %v, want a usage error", err)
	}
}

// TestControlLogBadInput: a bench without the Sidewalk settings, an output directory that cannot
// be written, an unknown format: an error, and no log written.
func TestControlLogBadInput(t *testing.T) {
	t.Parallel()
	sb := factoryBench(t, 1, "factory:\n  device_type: A17XHX23H06INH\n")
	out := filepath.Join(t.TempDir(), "logs")
	if _, err := hil(t, "control-log", "--bench", sb.BenchFile, "--format", "sidewalk", "--out", out); err == nil || !strings.Contains(err.Error(), "factory.sidewalk.apid") {
		t.Errorf("no APID: %v", err)
	}
	blocked := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocked, []byte("in the way"), 0o644)
	if _, err := hil(t, "control-log", "--bench", sb.BenchFile, "--format", "ffs", "--out", blocked); err == nil {
		t.Error("control-log into a file succeeded")
	}
	if _, err := hil(t, "control-log", "--bench", sb.BenchFile, "--format", "csv", "--out", out); !errors.Is(err, errUsage) {
		t.Errorf("--format csv: %v, want a usage error", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused runs made %s", out)
	}
}

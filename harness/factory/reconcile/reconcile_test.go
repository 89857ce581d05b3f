package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/factory/controllog"
	"hilbench/harness/factory/devices"
	"hilbench/harness/factory/internal/factorytest"
	"hilbench/harness/factory/outdir"
)

var cfg = controllog.Config{DeviceType: "A17XHX23H06INH", APID: "pd25", Stage: "production"}

var want = Expect{DeviceType: cfg.DeviceType, APID: cfg.APID, Stage: cfg.Stage}

// setup writes a Sidewalk control log of the given DSNs into a directory and returns it with the
// SMSNs.
func setup(t *testing.T, dsns ...string) (string, []string) {
	t.Helper()
	l := factorytest.New(t)
	for _, d := range dsns {
		l.Add(t, d)
	}
	devs, err := devices.All(context.Background(), l, devices.Verified)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := controllog.Make(controllog.FormatSidewalk, devs, cfg, dir, time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if err := outdir.Write(dir, b.Files()); err != nil {
		t.Fatal(err)
	}
	var smsns []string
	for _, d := range devs {
		s, _ := controllog.SMSN(cfg.DeviceType, cfg.Stage, d.ID(), cfg.APID)
		smsns = append(smsns, s)
	}
	return dir, smsns
}

func check(t *testing.T, csvText, dir string) *Report {
	t.Helper()
	rows, err := ReadCSV(strings.NewReader(csvText), "serials.csv")
	if err != nil {
		t.Fatal(err)
	}
	logs, err := controllog.ReadDir(controllog.FormatSidewalk, dir)
	if err != nil {
		t.Fatal(err)
	}
	return Check(rows, logs, want, "serials.csv")
}

func kinds(r *Report) string {
	var k []string
	for _, p := range r.Problems {
		k = append(k, p.Kind)
	}
	return strings.Join(k, ",")
}

func TestMatch(t *testing.T) {
	t.Parallel()
	dir, smsns := setup(t, "SN0001", "SN0002", "SN0003")
	// Without a header, SMSNs alone, in lower case.
	r := check(t, strings.ToLower(strings.Join(smsns, "\n"))+"\n", dir)
	if !r.OK() || r.Matched != 3 || r.Entries != 3 {
		t.Errorf("report %+v", r)
	}
	// With a header naming each device's parts.
	csv := "smsn,dsn,device_type,apid\n"
	for i, s := range smsns {
		csv += fmt.Sprintf("%s,SN000%d,%s,%s\n", s, i+1, cfg.DeviceType, cfg.APID)
	}
	if r := check(t, csv, dir); !r.OK() || r.Matched != 3 {
		t.Errorf("report with header: %+v", r)
	}
}

// TestMismatches: each disagreement is reported with its kind, and the report says MISMATCH.
func TestMismatches(t *testing.T) {
	t.Parallel()
	dir, smsns := setup(t, "SN0001", "SN0002", "SN0003")
	stranger, _ := controllog.SMSN(cfg.DeviceType, cfg.Stage, "SN9999", cfg.APID)
	otherType, _ := controllog.SMSN("A0THERTYPE", cfg.Stage, "SN0002", cfg.APID)
	for _, c := range []struct {
		name, csv, want string
	}{
		{"missing in logs", strings.Join(append(smsns, stranger), "\n"), MissingInLogs},
		{"missing in csv", strings.Join(smsns[:2], "\n"), MissingInCSV},
		{"duplicate in csv", strings.Join(append(smsns, smsns[1]), "\n"), DuplicateInCSV},
		{"apid in csv", "smsn,apid\n" + smsns[0] + ",pd25\n" + smsns[1] + ",pd25\n" + smsns[2] + ",xx99\n", APIDMismatch + "," + APIDMismatch},
		{"device type", "smsn,dsn,device_type,apid\n" + smsns[0] + ",SN0001," + cfg.DeviceType + ",pd25\n" +
			otherType + ",SN0002,A0THERTYPE,pd25\n" + smsns[2] + ",SN0003," + cfg.DeviceType + ",pd25\n",
			DeviceTypeMismatch + "," + MissingInLogs + "," + MissingInCSV},
		{"smsn not of its parts", "smsn,dsn,device_type,apid\n" + smsns[0] + ",SN0002," + cfg.DeviceType + ",pd25\n" +
			smsns[1] + ",SN0002," + cfg.DeviceType + ",pd25\n" + smsns[2] + ",SN0003," + cfg.DeviceType + ",pd25\n", SMSNMismatch},
	} {
		r := check(t, c.csv, dir)
		if got := kinds(r); got != c.want {
			t.Errorf("%s: problems %s, want %s\n%+v", c.name, got, c.want, r.Problems)
		}
		var b strings.Builder
		r.WriteText(&b)
		if !strings.HasPrefix(b.String(), "MISMATCH") {
			t.Errorf("%s: report %q", c.name, b.String())
		}
	}
}

// TestLogProblems: an entry in two logs, an APID other than the bench's, and a log changed after
// its SHA-256 file was written.
func TestLogProblems(t *testing.T) {
	t.Parallel()
	dir, smsns := setup(t, "SN0001", "SN0002")
	logs, _ := filepath.Glob(filepath.Join(dir, "C_CONTROL_LOG_*.txt"))
	data, _ := os.ReadFile(logs[0])
	// The same log again under a later name, with a correct SHA-256 file: every entry twice.
	b := controllog.Batch{Name: controllog.FileName(controllog.FormatSidewalk, time.Date(2026, 12, 6, 9, 1, 0, 0, time.UTC)), Data: data}
	if err := outdir.Write(dir, b.Files()); err != nil {
		t.Fatal(err)
	}
	r := check(t, strings.Join(smsns, "\n"), dir)
	if got := kinds(r); got != DuplicateInLogs+","+DuplicateInLogs {
		t.Errorf("problems %s", got)
	}
	os.WriteFile(logs[0], []byte(strings.ReplaceAll(string(data), `"pd25"`, `"zz11"`)), 0o644)
	r = check(t, strings.Join(smsns, "\n"), dir)
	got := kinds(r)
	for _, k := range []string{Checksum, APIDMismatch, DuplicateInLogs} {
		if !strings.Contains(got, k) {
			t.Errorf("changed log: problems %s, want %s among them", got, k)
		}
	}
}

// TestMalformedCSV: the error names the file and line.
func TestMalformedCSV(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("AB", 32)
	for _, c := range []struct{ csv, want string }{
		{"smsn\n" + good + "\n\"unclosed\n", "serials.csv:3"},
		{"smsn,apid\n" + good + ",pd25\n" + good + "\n", "serials.csv:3"},
		{"smsn\n" + good + "\nnot-hex\n", "serials.csv:3: SMSN"},
		{"serial\n" + good + "\n", "serials.csv:1: unknown column"},
		{"apid\npd25\n", "serials.csv:1: no smsn column"},
		{"smsn,stage\n" + good + ",staging\n", "serials.csv:2: stage"},
		{"smsn\n", "no SMSNs"},
	} {
		_, err := ReadCSV(strings.NewReader(c.csv), "serials.csv")
		if !errors.Is(err, ErrCSV) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.csv, err, c.want)
		}
	}
}

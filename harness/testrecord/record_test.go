package testrecord

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/junit"
)

// schemaPath is the record's JSON Schema in docs/.
const schemaPath = "../../docs/schemas/test-record.schema.json"

// ValidateWithPython checks JSON files against the schema with python3-jsonschema, an independent
// validator (Draft 2020-12). It returns the validator's complaint, "" when every file is valid.
// Without python3's jsonschema the test is skipped (failed with CI=true).
func validateWithPython(t *testing.T, files ...string) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing (scripts/deps.sh installs python3-jsonschema)")
		}
		t.Skip("python3 missing: the schema check needs python3-jsonschema")
	}
	script := `
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = 0
for f in sys.argv[2:]:
    for e in v.iter_errors(json.load(open(f))):
        print(f"{f}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
        bad += 1
sys.exit(1 if bad else 0)
`
	args := append([]string{"-c", script, schemaPath}, files...)
	out, err := exec.Command("python3", args...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No module named 'jsonschema'") {
			if os.Getenv("CI") == "true" {
				t.Fatal("python3-jsonschema is missing")
			}
			t.Skip("python3-jsonschema missing")
		}
		if len(out) == 0 {
			t.Fatalf("python3: %v", err)
		}
		return string(out)
	}
	return ""
}

func sample(t0 time.Time) []*Record {
	lo, hi := 1000.0, 8000.0
	eq := "acs-sim-1.1.0"
	pass := New("20261206T074600.000Z-dut1-0a1b2c3d", "HS0011223344", "line1", "dut1", "op7", "run1", "acs-end-of-line", t0)
	pass.Phases = []Phase{
		{Name: "dut_id", Type: "dut_id", Outcome: Pass, StartedAt: t0, EndedAt: t0.Add(time.Second), DurationMS: 1000, Attempts: 1},
		{Name: "chain_size", Type: "shell", Outcome: Pass, StartedAt: t0, EndedAt: t0.Add(2 * time.Second), DurationMS: 2000, Attempts: 1,
			Measurements: []Measurement{{Name: "chain_pem_bytes", Value: "1500", Outcome: Pass, Min: &lo, Max: &hi, Units: "bytes"}}},
		{Name: "firmware_version", Type: "shell", Outcome: Pass, StartedAt: t0, EndedAt: t0, Attempts: 1,
			Measurements: []Measurement{{Name: "fw", Value: eq, Outcome: Pass, Equals: &eq}}},
	}
	pass.Identity = &Identity{CertificateSerial: "1f2e", Fingerprint: strings.Repeat("ab", 32), Subject: "CN=x", NotAfter: t0.Add(time.Hour),
		DAK: "CN=dak", DAKFingerprint: strings.Repeat("cd", 32), Attestation: "SoftDAK", Already: false, Reused: false}
	pass.Attachments = []Attachment{{Name: "transcript", Path: "/tmp/x.transcript", MediaType: "text/plain", Size: 10}}
	pass.Outcome, pass.EndedAt = Pass, t0.Add(3*time.Second)

	fail := New("r2", "HS2", "line1", "dut2", "", "run1", "acs-end-of-line", t0)
	fail.Phases = []Phase{
		{Name: "verify", Type: "verify", Outcome: Fail, StartedAt: t0, EndedAt: t0, Attempts: 2, Message: "chain mismatch", Step: "read_back"},
		{Name: "reboot", Type: "reboot", Outcome: Skip, StartedAt: t0, EndedAt: t0, Message: "not run"},
	}
	fail.Outcome, fail.FailedPhase, fail.Message, fail.EndedAt = Fail, "verify", "chain mismatch", t0.Add(time.Second)

	aborted := New("r3", "", "line1", "dut3", "", "run1", "acs-end-of-line", t0)
	aborted.Outcome, aborted.Message, aborted.EndedAt = Aborted, "station stopped", t0
	return []*Record{pass, fail, aborted}
}

// TestRecordsValidateAgainstTheSchema: every kind of record the station writes passes
// python3-jsonschema, and records that break the schema do not (the validator can fail).
func TestRecordsValidateAgainstTheSchema(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var files []string
	for i, r := range sample(time.Date(2026, 12, 6, 7, 46, 0, 0, time.UTC)) {
		f := filepath.Join(dir, "r"+string(rune('0'+i))+".json")
		if err := r.WriteFile(f); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(f)
		if back, err := Parse(b); err != nil || back.ID != r.ID {
			t.Fatalf("Parse: %v", err)
		}
		files = append(files, f)
	}
	if msg := validateWithPython(t, files...); msg != "" {
		t.Fatalf("valid records refused:\n%s", msg)
	}
	bad := sample(time.Now())
	bad[0].Outcome = "MAYBE"
	bad[1].Message = ""                            // FAIL needs a message
	bad[2].Identity = &Identity{Fingerprint: "zz"} // not hex, fields missing
	var badFiles []string
	for i, r := range bad {
		f := filepath.Join(dir, "bad"+string(rune('0'+i))+".json")
		r.WriteFile(f)
		badFiles = append(badFiles, f)
	}
	msg := validateWithPython(t, badFiles...)
	for _, f := range badFiles {
		if !strings.Contains(msg, f) {
			t.Errorf("the validator accepted %s:\n%s", f, msg)
		}
	}
}

func TestJUnit(t *testing.T) {
	t.Parallel()
	b, err := JUnit("line1 run1", sample(time.Date(2026, 12, 6, 7, 46, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	var doc junit.Suites // its XML tags read what it writes
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(doc.Suites) != 3 || doc.Tests != 6 || doc.Failures != 1 || doc.Errors != 1 || doc.Skipped != 1 {
		t.Fatalf("suites %d tests %d failures %d errors %d skipped %d\n%s", len(doc.Suites), doc.Tests, doc.Failures, doc.Errors, doc.Skipped, b)
	}
	if doc.Suites[0].Name != "HS0011223344" || doc.Suites[2].Name != "dut3 (serial unknown)" {
		t.Errorf("suite names %q %q", doc.Suites[0].Name, doc.Suites[2].Name)
	}
	if !strings.Contains(string(b), `chain_pem_bytes = 1500 bytes (PASS)`) {
		t.Errorf("measurement not in system-out:\n%s", b)
	}
}

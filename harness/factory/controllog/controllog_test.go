package controllog

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/factory/devices"
	"hilbench/harness/factory/internal/factorytest"
	"hilbench/harness/factory/outdir"
)

var cfg = Config{DeviceType: "A17XHX23H06INH", APID: "pd25", Stage: "production"}

// TestSMSNCheckValue: the SMSN of the notes' example (device type A17XHX23H06INH, DSN SN1234567,
// APID pd25, production) is the SHA-256 that openssl computes of the string the notes spell out.
func TestSMSNCheckValue(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("openssl", "dgst", "-sha256", "-r")
	cmd.Stdin = strings.NewReader("A17XHX23H06INH-PRODUCTIONSN1234567pd25")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl dgst: %v", err)
	}
	want := strings.ToUpper(strings.Fields(string(out))[0])
	got, err := SMSN("A17XHX23H06INH", "production", "SN1234567", "pd25")
	if err != nil || got != want {
		t.Fatalf("SMSN = %s, %v; openssl says %s", got, err, want)
	}
	// The stage is part of it: another stage, another SMSN.
	if test, _ := SMSN("A17XHX23H06INH", "test", "SN1234567", "pd25"); test == got {
		t.Error("the stage does not change the SMSN")
	}
	if _, err := SMSN("A17XHX23H06INH", "staging", "SN1234567", "pd25"); !errors.Is(err, ErrConfig) {
		t.Errorf("SMSN with stage staging = %v, want ErrConfig", err)
	}
}

// python is Debian's python3 with python3-jsonschema (the judge of the schemas).
func python(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import jsonschema").Run() == nil {
			return p
		}
	}
	t.Fatal("no python3 with jsonschema: install python3-jsonschema (scripts/deps.sh)")
	return ""
}

// validate runs python3 -m jsonschema on the document with the schema in docs/schemas.
func validate(t *testing.T, schema string, doc []byte) error {
	t.Helper()
	f := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python(t), "-W", "ignore", "-m", "jsonschema", "-i", f, filepath.Join("../../../docs/schemas", schema)).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

func newDevices(t *testing.T, ids ...string) (*factorytest.Ledger, []devices.Device) {
	t.Helper()
	l := factorytest.New(t)
	for _, id := range ids {
		l.Add(t, id)
	}
	devs, err := devices.All(context.Background(), l, devices.Verified)
	if err != nil {
		t.Fatal(err)
	}
	return l, devs
}

// opensslControlLogKey runs the FFS provisioning guide's command on the leaf certificate.
func opensslControlLogKey(t *testing.T, leaf *x509.Certificate) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "device-certificate.pem")
	if err := os.WriteFile(f, pemCert(leaf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", `openssl x509 -in "$1" -pubkey -noout | openssl enc -base64 -d | openssl enc -base64`, "sh", f).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	return strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "")
}

func pemCert(c *x509.Certificate) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + wrap(base64.StdEncoding.EncodeToString(c.Raw)) + "-----END CERTIFICATE-----\n")
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	return b.String() + s + "\n"
}

// TestFFSLog: the FFS log validates against its schema, carries each device's id and the
// public key openssl derives from its certificate as the FFS provisioning guide does; a log
// the schema must refuse is refused (the judge can fail).
func TestFFSLog(t *testing.T) {
	t.Parallel()
	_, devs := newDevices(t, "DSN-0001", "DSN-0002")
	dir := t.TempDir()
	b, err := Make(FormatFFS, devs, cfg, dir, time.Date(2026, 12, 6, 8, 30, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "FFS_CONTROL_LOG_20261206083005.json" || b.Devices != 2 {
		t.Fatalf("batch %s with %d devices", b.Name, b.Devices)
	}
	if err := validate(t, "ffs-control-log.schema.json", b.Data); err != nil {
		t.Fatalf("schema: %v\n%s", err, b.Data)
	}
	var l FFSLog
	if err := json.Unmarshal(b.Data, &l); err != nil {
		t.Fatal(err)
	}
	for i, e := range l.ControlLogs {
		if e.Device.SerialNumber != devs[i].ID() {
			t.Errorf("entry %d: serial %q, want %q", i, e.Device.SerialNumber, devs[i].ID())
		}
		if want := opensslControlLogKey(t, devs[i].Leaf()); e.DHAData.PublicKey != want {
			t.Errorf("entry %d: public key %s, openssl gives %s", i, e.DHAData.PublicKey, want)
		}
	}
	bad := bytes.Replace(b.Data, []byte(`"deviceTypeId"`), []byte(`"deviceType"`), 1)
	if err := validate(t, "ffs-control-log.schema.json", bad); err == nil {
		t.Error("the schema accepts an entry without deviceTypeId")
	}
}

// TestSidewalkLog: version 4-0-1, SMSN per device, the APID, the chain that decodes to the
// record's certificates; valid against its schema; a wrong version is refused by the schema.
func TestSidewalkLog(t *testing.T) {
	t.Parallel()
	_, devs := newDevices(t, "SN1234567", "SN7654321")
	b, err := Make(FormatSidewalk, devs, cfg, t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !IsLogName(FormatSidewalk, b.Name) {
		t.Errorf("name %s", b.Name)
	}
	if err := validate(t, "sidewalk-control-log.schema.json", b.Data); err != nil {
		t.Fatalf("schema: %v\n%s", err, b.Data)
	}
	var l SidewalkLog
	if err := json.Unmarshal(b.Data, &l); err != nil {
		t.Fatal(err)
	}
	for i, e := range l.ControlLogs {
		want, _ := SMSN(cfg.DeviceType, cfg.Stage, devs[i].ID(), cfg.APID)
		if e.Version != "4-0-1" || e.Device.SerialNumber != want || e.Device.ProductIdentifier.AdvertisedProductID != "pd25" ||
			e.Device.SidewalkData.Label != "production" {
			t.Errorf("entry %d: %+v", i, e)
		}
		der, err := base64.StdEncoding.DecodeString(e.Device.SidewalkData.P256R1CertificateChain)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := x509.ParseCertificates(der)
		if err != nil || len(certs) != len(devs[i].Chain) || !certs[0].Equal(devs[i].Leaf()) {
			t.Errorf("entry %d: chain of %d certificates (%v), want the record's %d", i, len(certs), err, len(devs[i].Chain))
		}
	}
	bad := bytes.Replace(b.Data, []byte(`"4-0-1"`), []byte(`"4-0-0"`), 1)
	if err := validate(t, "sidewalk-control-log.schema.json", bad); err == nil {
		t.Error("the schema accepts version 4-0-0")
	}
}

// TestBatches: a second run logs only the devices made since; with none new it writes nothing;
// sha256sum -c accepts the SHA-256 files.
func TestBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, devs := newDevices(t, "DSN-A", "DSN-B")
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	b1, err := Make(FormatSidewalk, devs, cfg, dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := outdir.Write(dir, b1.Files()); err != nil {
		t.Fatal(err)
	}
	l.Add(t, "DSN-C")
	devs, _ = devices.All(ctx, l, devices.Verified)
	b2, err := Make(FormatSidewalk, devs, cfg, dir, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if b2.Devices != 1 || b2.Skipped != 2 {
		t.Fatalf("second batch: %d devices, %d skipped; want 1 and 2", b2.Devices, b2.Skipped)
	}
	if err := outdir.Write(dir, b2.Files()); err != nil {
		t.Fatal(err)
	}
	b3, err := Make(FormatSidewalk, devs, cfg, dir, t0.Add(2*time.Minute))
	if err != nil || b3.Devices != 0 || b3.Skipped != 3 {
		t.Fatalf("third batch: %d devices, %d skipped, %v; want nothing new", b3.Devices, b3.Skipped, err)
	}
	cmd := exec.Command("sh", "-c", "sha256sum -c *.sha256")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	logs, err := ReadDir(FormatSidewalk, dir)
	if err != nil || len(logs) != 2 || !logs[0].SumOK || !logs[1].SumOK {
		t.Fatalf("ReadDir = %+v, %v", logs, err)
	}
	// A log changed after it was written no longer matches its SHA-256 file.
	p := filepath.Join(dir, b1.Name)
	data, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(data, []byte("pd25"), []byte("pd26"), 1), 0o644)
	f, err := Read(FormatSidewalk, p)
	if err != nil || f.SumOK || !strings.Contains(f.SumProblem, "does not match") {
		t.Errorf("changed log: %+v, %v", f, err)
	}
}

// TestDeviceWithoutID: a record with no device id cannot be logged; the error names its record.
func TestDeviceWithoutID(t *testing.T) {
	t.Parallel()
	_, devs := newDevices(t, "")
	for _, format := range Formats {
		_, err := Make(format, devs, cfg, t.TempDir(), time.Now())
		if !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), "ledger record") {
			t.Errorf("%s: %v, want ErrDevice naming the record", format, err)
		}
	}
	if _, err := Make(FormatSidewalk, nil, Config{DeviceType: "x"}, t.TempDir(), time.Now()); !errors.Is(err, ErrConfig) {
		t.Errorf("sidewalk without an APID: %v, want ErrConfig", err)
	}
}

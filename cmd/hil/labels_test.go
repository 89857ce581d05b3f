package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/fixtures"
	"hilbench/harness/bench"
	"hilbench/harness/ledger"
	"hilbench/harness/signer/softdak"
	"hilbench/targets/simbench"
)

// factoryBench provisions n simulated ACK modules (they report their DSN, which labels and
// control logs need) and adds a factory section to their bench file.
func factoryBench(t *testing.T, n int, factory string) *simbench.ACKBench {
	t.Helper()
	sb, err := simbench.StartACK(t.TempDir(), simbench.ACKOptions{Modules: n, BootDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"provision", "--bench", sb.BenchFile, "--all"}, &out, &out); err != nil {
		t.Fatalf("provision: %v\n%s", err, out.String())
	}
	f, err := os.OpenFile(sb.BenchFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(factory); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return sb
}

const factorySection = `factory:
  device_type: A17XHX23H06INH
  labels:
    template: "ABV:IB01;SERNUM:{serial};PID:ebK3;PUK:{puk};PIN:{pin};"
    module_size: 4
    dpi: 300
  sidewalk: {apid: pd25, stage: production}
`

// verifiedRecords reads the ledger the way an auditor would: every verified record.
func verifiedRecords(t *testing.T, sb *simbench.ACKBench) []ledger.Record {
	t.Helper()
	lg, err := ledger.Open(context.Background(), sb.Bench.Ledger, sb.Bench.Output)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	recs, err := lg.List(context.Background(), ledger.Filter{State: ledger.Verified})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func payloadFields(p string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(p, ";") {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// TestLabelsFromLedger: hil labels --all writes a PNG and an SVG for each provisioned module;
// dmtxread reads each Data Matrix back as the payload of its ledger record (the serial, the
// compressed key openssl derives from the recorded chain, a valid setup PIN); zbarimg reads
// the serial's Code 128. A second run gives the same PIN (kept in the ledger), and the PIN
// reaches neither stdout nor stderr.
func TestLabelsFromLedger(t *testing.T) {
	t.Parallel()
	sb := factoryBench(t, 2, factorySection)
	recs := verifiedRecords(t, sb)
	if len(recs) != 2 {
		t.Fatalf("%d verified records, want 2", len(recs))
	}
	out := filepath.Join(t.TempDir(), "labels")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"labels", "--bench", sb.BenchFile, "--all", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("labels: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "does not fit a 36x36") {
		t.Errorf("no size warning on stderr: %q", stderr.String())
	}
	pins := map[string]string{}
	for _, r := range recs {
		png := filepath.Join(out, r.DeviceID+".png")
		got, err := exec.Command("dmtxread", "-N1", png).Output()
		if err != nil {
			t.Fatalf("dmtxread %s: %v", png, err)
		}
		f := payloadFields(string(got))
		if f["ABV"] != "IB01" || f["SERNUM"] != r.DeviceID || f["PID"] != "ebK3" || len(f["PIN"]) != 9 {
			t.Errorf("%s: payload fields %v", r.DeviceID, f)
		}
		if want := opensslCompressedKey(t, r.ChainPEM); f["PUK"] != want {
			t.Errorf("%s: PUK %s, openssl gives %s", r.DeviceID, f["PUK"], want)
		}
		pins[r.DeviceID] = f["PIN"]
		zb, err := exec.Command("zbarimg", "--raw", "-q", png).Output()
		if err != nil || strings.TrimSpace(string(zb)) != r.DeviceID {
			t.Errorf("zbarimg %s: %q, %v", png, zb, err)
		}
		if _, err := os.Stat(filepath.Join(out, r.DeviceID+".svg")); err != nil {
			t.Error(err)
		}
		if strings.Contains(stdout.String()+stderr.String(), f["PIN"]) {
			t.Errorf("the setup PIN of %s is in the command's output", r.DeviceID)
		}
	}
	// Again, one device: the same PIN.
	out2 := filepath.Join(t.TempDir(), "again")
	if _, err := hil(t, "labels", "--bench", sb.BenchFile, "--device", recs[0].DeviceID, "--out", out2); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command("dmtxread", "-N1", filepath.Join(out2, recs[0].DeviceID+".png")).Output()
	if err != nil || payloadFields(string(got))["PIN"] != pins[recs[0].DeviceID] {
		t.Errorf("second label of %s: another PIN (or %v)", recs[0].DeviceID, err)
	}
	if pins[recs[0].DeviceID] == pins[recs[1].DeviceID] {
		t.Error("two devices got the same setup PIN")
	}
}

// opensslCompressedKey: the FFS manufacturing guide's steps on the chain's leaf.
func opensslCompressedKey(t *testing.T, chainPEM string) string {
	t.Helper()
	dir := t.TempDir()
	cert := filepath.Join(dir, "chain.pem")
	os.WriteFile(cert, []byte(chainPEM), 0o644)
	out, err := exec.Command("sh", "-c", `openssl x509 -pubkey -noout -in "$1" > "$2/pub.pem" && openssl ec -pubin -in "$2/pub.pem" -conv_form compressed 2>/dev/null`,
		"sh", cert, dir).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "-----") {
			b.WriteString(strings.TrimSpace(l))
		}
	}
	return b.String()
}

// TestLabelsBadInput: a payload too big for any Data Matrix, an output directory that cannot
// be written, a bench without a template, usage errors: a clear error, and no label written.
func TestLabelsBadInput(t *testing.T) {
	t.Parallel()
	// 1,500 characters of base64's alphabet: no Data Matrix mode packs them into 1304 codewords.
	raw := make([]byte, 1125)
	rand.Read(raw)
	big := base64.StdEncoding.EncodeToString(raw)
	sb := factoryBench(t, 1, "factory:\n  labels:\n    template: \"ABV:IB01;NOTE:"+big+";PUK:{puk};PIN:{pin};\"\n")
	out := filepath.Join(t.TempDir(), "labels")
	_, err := hil(t, "labels", "--bench", sb.BenchFile, "--all", "--out", out)
	if err == nil || !strings.Contains(err.Error(), "too big") || !strings.Contains(err.Error(), "characters") {
		t.Errorf("payload too big: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused batch made %s (%v)", out, err)
	}

	sb = factoryBench(t, 1, factorySection)
	blocked := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocked, []byte("in the way"), 0o644)
	if _, err := hil(t, "labels", "--bench", sb.BenchFile, "--all", "--out", blocked); err == nil || !strings.Contains(err.Error(), "output directory") {
		t.Errorf("unwritable output: %v", err)
	}
	if _, err := hil(t, "labels", "--bench", sb.BenchFile, "--device", "NO-SUCH-DEVICE", "--out", out); err == nil || !strings.Contains(err.Error(), "NO-SUCH-DEVICE") {
		t.Errorf("unknown device: %v", err)
	}
	for _, args := range [][]string{
		{"labels", "--bench", sb.BenchFile, "--all", "--device", "x", "--out", out},
		{"labels", "--bench", sb.BenchFile, "--all"},
		{"labels", "--all", "--out", out},
	} {
		if _, err := hil(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("hil %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused runs made %s", out)
	}
}

// TestLabelsOfSignedCSRs: hil sign (the CSR Signing Application's drop-in) leaves its records
// issued, never read back from a device: labels and control logs take them with --unverified
// only, the device id being the CSR's per-device CN.
func TestLabelsOfSignedCSRs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dak, err := softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const serial = "G3A0PA0180230099"
	profile := filepath.Join(dir, "device.conf")
	conf := strings.Replace(string(fixtures.DeviceConf), "CN = Example FFS Device", "CN = "+serial, 1)
	if conf == string(fixtures.DeviceConf) {
		t.Fatal("the example profile has no CN line to change")
	}
	os.WriteFile(profile, []byte(conf), 0o644)
	b := &bench.Bench{
		Signer:  bench.SignerConfig{Type: "softdak", Key: dak.Key, Certificate: dak.Certificate, Roots: []string{dak.RootCertificate}},
		Profile: bench.ProfileConfig{DeviceConf: profile, PerDeviceFields: []string{"CN"}},
		Output:  filepath.Join(dir, "out"),
		Factory: bench.FactoryConfig{DeviceType: "A17XHX23H06INH", Labels: bench.LabelsConfig{Template: "ABV:IB01;SERNUM:{serial};PID:ebK3;PUK:{puk};PIN:{pin};"},
			Sidewalk: bench.SidewalkConfig{APID: "pd25"}},
		Targets: []bench.Target{{Name: "dut1", Family: "acs", Console: bench.Console{Port: "/dev/null"}}},
	}
	benchFile := filepath.Join(dir, "bench.yaml")
	if err := b.Write(benchFile); err != nil {
		t.Fatal(err)
	}
	csr := filepath.Join(dir, "device.csr")
	if out, err := exec.Command("openssl", "req", "-new", "-nodes", "-config", profile, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-keyout", filepath.Join(dir, "device.key"), "-out", csr).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	if out, err := hil(t, "sign", "--bench", benchFile, "--csr", csr, "--out", filepath.Join(dir, "chain.pem")); err != nil {
		t.Fatalf("hil sign: %v\n%s", err, out)
	}
	labels := filepath.Join(dir, "labels")
	if _, err := hil(t, "labels", "--bench", benchFile, "--device", serial, "--out", labels); err == nil || !strings.Contains(err.Error(), "none verified") {
		t.Errorf("labels of an issued record without --unverified: %v", err)
	}
	if out, err := hil(t, "labels", "--bench", benchFile, "--device", serial, "--out", labels, "--unverified"); err != nil {
		t.Fatalf("labels --unverified: %v\n%s", err, out)
	}
	got, err := exec.Command("dmtxread", "-N1", filepath.Join(labels, serial+".png")).Output()
	if err != nil || payloadFields(string(got))["SERNUM"] != serial {
		t.Errorf("dmtxread: %q, %v", got, err)
	}
	chain, _ := os.ReadFile(filepath.Join(dir, "chain.pem"))
	if want := opensslCompressedKey(t, string(chain)); payloadFields(string(got))["PUK"] != want {
		t.Errorf("PUK %s, openssl gives %s", payloadFields(string(got))["PUK"], want)
	}
	if out, err := hil(t, "control-log", "--bench", benchFile, "--format", "sidewalk", "--out", filepath.Join(dir, "logs"), "--unverified"); err != nil || !strings.Contains(out, ": 1 devices") {
		t.Errorf("control-log --unverified: %v\n%s", err, out)
	}
}

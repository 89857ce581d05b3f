package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/signer/softdak"
	"hilbench/targets/simbench"
)

const (
	awsProfileFixture = "../../fixtures/profiles/aws-iot.conf"
	awsCM             = "Example Contract Manufacturing Co"
)

// awsBench makes dir/dak the contract manufacturer's CA (or another's) and returns a bench
// profile config for the AWS IoT example profile copied into dir.
func awsBench(t *testing.T, dir, manufacturer string) bench.ProfileConfig {
	t.Helper()
	if _, err := softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{
		CommonName: manufacturer + " device CA", Organization: manufacturer}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(awsProfileFixture)
	if err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "aws-iot.conf")
	if err := os.WriteFile(profile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return bench.ProfileConfig{DeviceConf: profile, DeviceTypeField: "OU", PerDeviceFields: []string{"CN", "serialNumber"}}
}

// A simulated device provisioned with the AWS IoT profile connects over mutual TLS with its own
// chain and key (read from the simulator's storage); without a key --mtls is refused saying why;
// another key fails the handshake step.
func TestVerifyMTLSSimulatedDevice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prof := awsBench(t, dir, awsCM)
	sb, err := simbench.Start(dir, simbench.Options{Devices: 1, BootDelay: 50 * time.Millisecond, Profile: prof.DeviceConf})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	b := *sb.Bench
	b.Profile = prof
	benchFile := filepath.Join(dir, "aws-bench.yaml")
	if err := b.Write(benchFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"provision", "--bench", benchFile, "--target", "dut1"}, &stdout, &stderr); err != nil {
		t.Fatalf("provision: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	dev, _ := sb.Device("dut1")
	keyTmpl := filepath.Join(filepath.Dir(dev.Dir()), "{target}", "dha", "dha_key.pem")
	stdout.Reset()
	if err := run(ctx, []string{"verify", "--bench", benchFile, "--target", "dut1", "--mtls", "--mtls-key", keyTmpl}, &stdout, &stderr); err != nil {
		t.Fatalf("verify --mtls: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	o := outcome(t, lastReport(t, b.Output, "verify"), "dut1")
	if o.Facts["mtls"] != "passed" || o.Facts["thing_name"] != "example-sensor-0001" || o.Facts["aws_certificate_id"] != o.Facts["sha256"] {
		t.Errorf("verify --mtls facts %v", o.Facts)
	}

	_, _, err = runArgs("verify", "--bench", benchFile, "--target", "dut1", "--mtls")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "never leaves it") {
		t.Errorf("--mtls without a key: %v, want a usage error explaining a real device's key never leaves it", err)
	}

	other := filepath.Join(dir, "other.key")
	if out, err := exec.Command("openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", other).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	stdout.Reset()
	err = run(ctx, []string{"verify", "--bench", benchFile, "--target", "dut1", "--mtls", "--mtls-key", other}, &stdout, &stderr)
	o = outcome(t, lastReport(t, b.Output, "verify"), "dut1")
	if err == nil || o.Step != StepMTLS || !strings.Contains(o.Error, "not the key of certificate") {
		t.Errorf("another key: %v, %+v", err, o)
	}
}

// hil sign with the AWS IoT profile: the batch writes the bulk registration file and the
// templates beside the chains; a CN that is no thing name is refused; a bench signing with
// another manufacturer's CA is refused before anything is signed.
func TestSignAWSIoTBatch(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	prof := awsBench(t, filepath.Join(sb.dir, "cm"), awsCM)
	b := *sb.b
	b.Profile, b.Output = prof, filepath.Join(sb.dir, "aws-out")
	cmDAK := filepath.Join(sb.dir, "cm", "dak")
	b.Signer.Key, b.Signer.Certificate = filepath.Join(cmDAK, softdak.KeyFile), filepath.Join(cmDAK, softdak.CertificateFile)
	b.Signer.Roots = []string{filepath.Join(cmDAK, softdak.RootCertificateFile)}
	benchFile := filepath.Join(sb.dir, "aws.yaml")
	if err := b.Write(benchFile); err != nil {
		t.Fatal(err)
	}
	csrDir := filepath.Join(sb.dir, "csr")
	if err := os.Mkdir(csrDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, cn := range []string{"sensor-0001", "sensor-0002", "sensor-0003", "bad name"} {
		conf := bytes.Replace(mustRead(t, prof.DeviceConf), []byte("CN = example-sensor-0001"), []byte("CN = "+cn), 1)
		conf = bytes.Replace(conf, []byte("serialNumber = 0001"), []byte(fmt.Sprintf("serialNumber = %04d", i+1)), 1)
		c := filepath.Join(sb.dir, fmt.Sprintf("d%d.conf", i))
		if err := os.WriteFile(c, conf, 0o644); err != nil {
			t.Fatal(err)
		}
		opensslCSR(t, csrDir, fmt.Sprintf("device-%d", i+1), c)
	}
	outDir := filepath.Join(sb.dir, "chains")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"sign", "--bench", benchFile, "--csr-dir", csrDir, "--out", outDir}, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "device-4.csr") || !strings.Contains(stderr.String(), "not an AWS IoT thing name") {
		t.Fatalf("err %v, want device-4.csr refused for its CN\n%s", err, stderr.String())
	}
	bulk := mustRead(t, filepath.Join(outDir, awsBulkFile))
	if n := bytes.Count(bulk, []byte("\n")); n != 3 || !bytes.Contains(bulk, []byte(`"ThingName":"sensor-0002"`)) || !bytes.Contains(bulk, []byte(`"SerialNumber":"0003"`)) {
		t.Errorf("bulk file:\n%s", bulk)
	}
	for _, f := range []string{awsBulkTemplate, awsJITPTemplate} {
		if data := mustRead(t, filepath.Join(outDir, f)); !bytes.Contains(data, []byte("ExampleSensorPolicy")) {
			t.Errorf("%s:\n%s", f, data)
		}
	}
	for i := 1; i <= 3; i++ {
		opensslVerify(t, b.Signer.Roots[0], filepath.Join(outDir, fmt.Sprintf("device-%d.pem", i)))
	}

	// One CSR: refused before the DAK is opened, nothing on stdout.
	stdout.Reset()
	err = run(context.Background(), []string{"sign", "--bench", benchFile, "--csr", filepath.Join(csrDir, "device-4.csr")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not an AWS IoT thing name") || stdout.Len() != 0 {
		t.Errorf("one CSR with a CN that is no thing name: %v, stdout %q", err, stdout.String())
	}

	// Another key for thing sensor-0001: the ledger holds that thing name for the first key.
	twin := filepath.Join(sb.dir, "twin")
	if err := os.Mkdir(twin, 0o755); err != nil {
		t.Fatal(err)
	}
	twinCSR := opensslCSR(t, twin, "twin", filepath.Join(sb.dir, "d0.conf"))
	stdout.Reset()
	err = run(context.Background(), []string{"sign", "--bench", benchFile, "--csr", twinCSR}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "sensor-0001") || stdout.Len() != 0 {
		t.Errorf("a second key for thing sensor-0001: %v, stdout %q", err, stdout.String())
	}

	// The example development DAK's organisation is not the contract manufacturer.
	wrong := *sb.b
	wrong.Profile, wrong.Output = prof, filepath.Join(sb.dir, "wrong-out")
	wrongFile := filepath.Join(sb.dir, "wrong.yaml")
	if err := wrong.Write(wrongFile); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"sign", "--bench", wrongFile, "--csr-dir", csrDir, "--out", filepath.Join(sb.dir, "wrong")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), awsCM) {
		t.Errorf("another manufacturer's CA: %v", err)
	}
	if n := auditLines(t, &signBench{b: &wrong}); n != 0 {
		t.Errorf("%d signatures with the wrong CA's bench", n)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

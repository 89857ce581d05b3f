package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/fixtures"
	"hilbench/harness/bench"
	"hilbench/harness/pki"
	"hilbench/harness/signer/softdak"
	yksim "hilbench/harness/signer/yubikey/sim"
	"hilbench/harness/station"
	"hilbench/targets/simbench"
)

// signBench is a signing station's bench: a development SoftDAK, the example profile, a ledger
// in its output directory.
type signBench struct {
	dir, file string
	b         *bench.Bench
	dak       *softdak.InitResult
	profile   string
}

func newSignBench(t testing.TB) *signBench {
	t.Helper()
	dir := t.TempDir()
	dak, err := softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "device.conf")
	if err := os.WriteFile(profile, fixtures.DeviceConf, 0o644); err != nil {
		t.Fatal(err)
	}
	b := &bench.Bench{
		Signer: bench.SignerConfig{Type: "softdak", Key: dak.Key, Certificate: dak.Certificate,
			Roots: []string{dak.RootCertificate}},
		Profile: bench.ProfileConfig{DeviceConf: profile},
		Output:  filepath.Join(dir, "out"),
		// A bench names at least one target; hil sign touches none.
		Targets: []bench.Target{{Name: "dut1", Family: "acs", Console: bench.Console{Port: "/dev/null"}}},
	}
	sb := &signBench{dir: dir, file: filepath.Join(dir, "bench.yaml"), dak: dak, profile: profile}
	if err := b.Write(sb.file); err != nil {
		t.Fatal(err)
	}
	if sb.b, err = bench.Load(sb.file); err != nil {
		t.Fatal(err)
	}
	return sb
}

// opensslCSR makes a device key and CSR as the FFS provisioning guide does (openssl req with
// device.conf); conf overrides the profile (a CSR for another device type).
func opensslCSR(t testing.TB, dir, name, conf string) string {
	t.Helper()
	csr := filepath.Join(dir, name+".csr")
	cmd := exec.Command("openssl", "req", "-new", "-nodes", "-config", conf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-keyout", filepath.Join(dir, name+".key"), "-out", csr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	return csr
}

// opensslVerify is the independent judge: the chain file verifies to the root with openssl.
func opensslVerify(t *testing.T, root, chainFile string) {
	t.Helper()
	out, err := exec.Command("openssl", "verify", "-CAfile", root, "-untrusted", chainFile, chainFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Errorf("openssl verify %s: %v\n%s", chainFile, err, out)
	}
}

// checkChainShape: device certificate (the CSR's key), then the DAK certificate, as the FFS
// provisioning guide's `cat device-certificate.pem dak-certificate.pem` makes it.
func checkChainShape(t *testing.T, sb *signBench, chainPEM []byte, csrFile string) []*x509.Certificate {
	t.Helper()
	chain, err := pki.ParseChainPEM(chainPEM)
	if err != nil {
		t.Fatalf("chain: %v\n%s", err, chainPEM)
	}
	csrPEM, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(pemBlock(csrPEM))
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !pki.SamePublicKey(chain[0].PublicKey, csr.PublicKey) || !bytes.Equal(chain[1].Raw, sb.dak.DAK.Raw) {
		t.Errorf("chain of %d certificates, want the device certificate for the CSR's key then the DAK certificate", len(chain))
	}
	return chain
}

// shell runs a shell command line with hil standing for the test binary.
func shell(t *testing.T, dir, line string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	hil := filepath.Join(dir, "hil")
	if _, err := os.Stat(hil); err != nil {
		script := fmt.Sprintf("#!/bin/sh\nHIL_RUN_MAIN=1 exec %q \"$@\"\n", os.Args[0])
		if err := os.WriteFile(hil, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sh", append([]string{"-c", line, "sh"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// The FFS provisioning guide's pipe, with hil in place of the Java application; a second run
// for the same CSR gets the same chain from the ledger, not a second signature.
func TestSignPipeAsTheGuideWritesIt(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	csr := opensslCSR(t, sb.dir, "device", sb.profile)
	_, errOut, code := shell(t, sb.dir, `cat device.csr | hil sign --bench "$1" > device-cert-chain.pem`, sb.file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	chainFile := filepath.Join(sb.dir, "device-cert-chain.pem")
	first, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	chain := checkChainShape(t, sb, first, csr)
	opensslVerify(t, sb.dak.RootCertificate, chainFile)

	// The ledger holds it as issued: handed out, no device has reported storing it.
	ctx := context.Background()
	known := ledgerLookup(ctx, t, sb, chain[0])
	if known == nil || known.State != "issued" || known.Issued == nil || !bytes.Equal(known.Issued.ChainPEM, first) {
		t.Fatalf("ledger: %+v, want the chain recorded as issued", known)
	}

	// Again, with --csr and --out: the same chain, no new signature.
	again := filepath.Join(sb.dir, "again.pem")
	_, errOut, code = shell(t, sb.dir, `hil sign --bench "$1" --csr device.csr --out "$2"`, sb.file, again)
	second, _ := os.ReadFile(again)
	if code != 0 || !bytes.Equal(first, second) || !strings.Contains(errOut, "no new signature") {
		t.Errorf("second sign: exit %d, same chain %v, stderr %q", code, bytes.Equal(first, second), errOut)
	}
	if n := auditLines(t, sb); n != 1 {
		t.Errorf("the audit log holds %d signatures after signing one CSR twice, want 1", n)
	}
}

func ledgerLookup(ctx context.Context, t *testing.T, sb *signBench, leaf *x509.Certificate) *deviceKnown {
	t.Helper()
	st, err := station.Open(ctx, sb.b, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k, err := st.Issuer.Lookup(ctx, leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if k == nil {
		return nil
	}
	return &deviceKnown{State: k.State, Issued: k.Issued}
}

type deviceKnown struct {
	State  string
	Issued *pki.Issued
}

// auditLines counts the signatures in the DAK's audit log.
func auditLines(t *testing.T, sb *signBench) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(station.StateDir(sb.b), "audit.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

// Refusals: nothing on stdout, the reason on stderr, exit status 1, nothing signed.
func TestSignRefusesBadInput(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	csr := opensslCSR(t, sb.dir, "device", sb.profile)
	good, err := os.ReadFile(csr)
	if err != nil {
		t.Fatal(err)
	}
	otherConf := filepath.Join(sb.dir, "other.conf")
	if err := os.WriteFile(otherConf, bytes.Replace(fixtures.DeviceConf, []byte("A2EXAMPLE0TYPE"), []byte("A9OTHER0TYPE"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	other, _ := os.ReadFile(opensslCSR(t, sb.dir, "other", otherConf))
	blocked := filepath.Join(sb.dir, "blocked")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		stdin []byte
		args  []string
		want  string
	}{
		{"empty", nil, nil, "standard input is empty"},
		{"blank", []byte("\n\n"), nil, "standard input is empty"},
		{"truncated", good[:len(good)/2], nil, "truncated"},
		{"binary", bytes.Repeat([]byte{0x30, 0x82, 0xff, 0x00}, 64), nil, "not PEM"},
		{"too large", bytes.Repeat([]byte("A"), maxCSRBytes+10), nil, "not a CSR"},
		{"another device type", other, nil, "A9OTHER0TYPE"},
		{"output not writable", good, []string{"--csr", csr, "--out", filepath.Join(blocked, "chain.pem")}, "cannot be written"},
		{"missing CSR file", nil, []string{"--csr", filepath.Join(sb.dir, "nope.csr")}, "nope.csr"},
	} {
		args := append([]string{"sign", "--bench", sb.file}, c.args...)
		cmd := hilProc(context.Background(), args...)
		cmd.Stdin = bytes.NewReader(c.stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit status 1 (stderr %q)", c.name, err, errOut.String())
		}
		if out.Len() != 0 {
			t.Errorf("%s: stdout %q, want nothing", c.name, out.String())
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%s: stderr %q, want it to say %q", c.name, errOut.String(), c.want)
		}
	}
	if n := auditLines(t, sb); n != 0 {
		t.Errorf("%d signatures after refusals only, want 0", n)
	}
	if entries, _ := os.ReadDir(sb.dir); len(entries) > 0 {
		for _, e := range entries {
			if strings.Contains(e.Name(), ".hil-sign-") {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
	}
}

// Usage errors exit 2 naming what is wrong.
func TestSignUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sign"}, "--bench FILE is required"},
		{[]string{"sign", "--bench", "b.yaml", "--csr", "a", "--csr-dir", "d"}, "at most one"},
		{[]string{"sign", "--bench", "b.yaml", "--csr-dir", "d"}, "needs --out DIR"},
		{[]string{"sign", "--bench", "b.yaml", "--out", "x.pem"}, "goes with --csr"},
		{[]string{"sign", "--bench", "b.yaml", "--csr-dir", "d", "--out", "o", "--jobs", "0"}, "--jobs"},
		{[]string{"sign", "--pin", "1234"}, "unknown flag -pin"},
	} {
		_, _, err := runArgs(c.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("hil %s: %v, want a usage error saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// A batch: every good CSR is signed (openssl verify accepts each chain), a truncated one and
// one of another device type are named and written nowhere, exit status 1; a rerun gives the
// same chains from the ledger.
func TestSignDirBatch(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	csrDir := filepath.Join(sb.dir, "csr")
	if err := os.Mkdir(csrDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 12
	for i := range n {
		opensslCSR(t, csrDir, fmt.Sprintf("device-%02d", i), sb.profile)
	}
	good, _ := os.ReadFile(filepath.Join(csrDir, "device-00.csr"))
	if err := os.WriteFile(filepath.Join(csrDir, "broken.csr"), good[:len(good)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(csrDir, "notes.txt"), []byte("not a CSR, not signed"), 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(sb.dir, "chains")
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"sign", "--bench", sb.file, "--csr-dir", csrDir, "--out", outDir, "--jobs", "3"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 of 13 CSRs refused") {
		t.Fatalf("err = %v, want 1 of 13 refused\nstderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "broken.csr") || !strings.Contains(stderr.String(), "truncated") {
		t.Errorf("stderr does not name broken.csr as truncated:\n%s", stderr.String())
	}
	entries, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Errorf("%d files in the output, want %d chains", len(entries), n)
	}
	first := map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("device-%02d", i)
		f := filepath.Join(outDir, name+".pem")
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkChainShape(t, sb, data, filepath.Join(csrDir, name+".csr"))
		opensslVerify(t, sb.dak.RootCertificate, f)
		first[name] = data
	}
	if n := auditLines(t, sb); n != 12 {
		t.Errorf("%d signatures, want 12", n)
	}

	// Rerun without the broken CSR: the same chains, from the ledger. A stopped run's staging
	// directory is swept first.
	if err := os.Remove(filepath.Join(csrDir, "broken.csr")); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(outDir, ".hil-sign-123")
	if err := os.Mkdir(left, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, ".device-00.pem.hil-sign-456"), []byte("half a chain"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * staleAfter)
	if err := os.Chtimes(left, old, old); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if err := run(ctx, []string{"sign", "--bench", sb.file, "--csr-dir", csrDir, "--out", outDir}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "signed 12 of 12") || !strings.Contains(stdout.String(), "12 chains from the ledger") {
		t.Errorf("rerun: %s", stdout.String())
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(stderr.String(), "removed 1 temporary output") {
		t.Errorf("a stopped run's staging directory: %v; stderr %q", err, stderr.String())
	}
	for name, want := range first {
		if got, _ := os.ReadFile(filepath.Join(outDir, name+".pem")); !bytes.Equal(got, want) {
			t.Errorf("%s: another chain on the rerun", name)
		}
	}
	if n := auditLines(t, sb); n != 12 {
		t.Errorf("%d signatures after the rerun, want still 12", n)
	}
}

// sweepStale removes a stopped hil sign's hidden staging directories and temporary outputs once
// they are staleAfter old, and nothing else: younger ones may be a running hil sign's.
func TestSweepStale(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	old := now.Add(-staleAfter - time.Minute)
	create := func(name string, isDir bool, mtime time.Time) {
		p := filepath.Join(dir, name)
		var err error
		if isDir {
			if err = os.Mkdir(p, 0o755); err == nil {
				err = os.WriteFile(filepath.Join(p, ".x.pem.hil-sign-1"), []byte("x"), 0o644)
			}
		} else {
			err = os.WriteFile(p, []byte("x"), 0o644)
		}
		if err == nil {
			err = os.Chtimes(p, mtime, mtime)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	gone := []string{".hil-sign-111", ".device-02.pem.hil-sign-222", ".probe.hil-sign-333"}
	kept := []string{".hil-sign-444", ".device-05.pem.hil-sign-555", "device-03.pem", ".hidden", "hil-sign-666", "dir.hil-sign-777"}
	create(gone[0], true, old)
	create(gone[1], false, old)
	create(gone[2], false, old)
	create(kept[0], true, now)  // a running batch's
	create(kept[1], false, now) // a running single CSR's
	create(kept[2], false, old)
	create(kept[3], false, old)
	create(kept[4], false, old)
	create(kept[5], true, old) // not hidden: not ours
	var stderr bytes.Buffer
	sweepStale(dir, now, &stderr)
	for _, n := range gone {
		if _, err := os.Stat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it removed", n, err)
		}
	}
	for _, n := range kept {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v, want it kept", n, err)
		}
	}
	if !strings.Contains(stderr.String(), "removed 3 temporary output(s)") {
		t.Errorf("stderr %q, want it to say 3 were removed", stderr.String())
	}
}

// A station stopped between recording an in-process signature in the ledger and appending it to
// the audit log (the audit log's last line lost, as such a stop leaves it): hil ledger check
// reports the issued record the audit log lacks, without calling the ledger inconsistent, and the
// next request for the key appends the chain to the audit log before handing it out, with no new
// signature.
func TestLedgerCheckReportsAnIssuedRecordTheAuditLogLacks(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	csr := opensslCSR(t, sb.dir, "device", sb.profile)
	first := filepath.Join(sb.dir, "first.pem")
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"sign", "--bench", sb.file, "--csr", csr, "--out", first}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	check := func() string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, []string{"ledger", "check", "--bench", sb.file}, &out, &stderr); err != nil {
			t.Fatalf("ledger check: %v\n%s", err, out.String())
		}
		return out.String()
	}
	const lacks = "issued record(s) of this station that the audit log does not hold yet"
	if out := check(); strings.Contains(out, lacks) {
		t.Fatalf("ledger check with the audit log whole:\n%s", out)
	}
	auditFile := filepath.Join(station.StateDir(sb.b), "audit.jsonl")
	if err := os.WriteFile(auditFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := check(); !strings.Contains(out, "1 "+lacks) || !strings.Contains(out, "consistent") {
		t.Fatalf("ledger check with the audit log's line lost:\n%s", out)
	}
	again := filepath.Join(sb.dir, "again.pem")
	if err := run(ctx, []string{"sign", "--bench", sb.file, "--csr", csr, "--out", again}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) || auditLines(t, sb) != 1 {
		t.Fatalf("the second request: same chain %v, %d audit line(s); want the same chain, appended once", bytes.Equal(a, b), auditLines(t, sb))
	}
	if out := check(); strings.Contains(out, lacks) {
		t.Fatalf("ledger check after the chain was appended:\n%s", out)
	}
}

// A batch whose output cannot be written signs nothing.
func TestSignDirUnwritableOutput(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	csrDir := filepath.Join(sb.dir, "csr")
	if err := os.Mkdir(csrDir, 0o755); err != nil {
		t.Fatal(err)
	}
	opensslCSR(t, csrDir, "device", sb.profile)
	blocked := filepath.Join(sb.dir, "blocked")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"sign", "--bench", sb.file, "--csr-dir", csrDir, "--out", filepath.Join(blocked, "out")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "nothing was signed") {
		t.Errorf("err = %v, want the output refused before signing", err)
	}
	if n := auditLines(t, sb); n != 0 {
		t.Errorf("%d signatures, want 0", n)
	}
}

// A PIN file the YubiKey guard refuses stops hil sign before the card is touched, and the PIN
// never appears in what it prints.
func TestSignPINFileRefused(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	csr := opensslCSR(t, sb.dir, "device", sb.profile)
	pinFile := filepath.Join(sb.dir, "yubikey.pin")
	if err := os.WriteFile(pinFile, []byte("271828 \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := *sb.b
	b.Signer = bench.SignerConfig{Type: "yubikey", Serial: 10000001, PINFile: pinFile,
		Roots: []string{sb.dak.RootCertificate}, StateDir: filepath.Join(sb.dir, "state")}
	file := filepath.Join(sb.dir, "yubikey.yaml")
	if err := b.Write(file); err != nil {
		t.Fatal(err)
	}
	cmd := hilProc(context.Background(), "sign", "--bench", file, "--csr", csr)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || out.Len() != 0 {
		t.Fatalf("%v, stdout %q, want exit status 1 and nothing on stdout", err, out.String())
	}
	if !strings.Contains(errOut.String(), "white space after the PIN") || strings.Contains(errOut.String(), "271828") {
		t.Errorf("stderr %q, want the PIN file refused without quoting the PIN", errOut.String())
	}
}

// exampleCSR is a CSR for the example profile (fixtures/profiles/device.conf) made in Go, so a
// benchmark's thousands of devices cost no openssl processes.
func exampleCSR(b testing.TB) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	oid := func(n int) asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 4843, 1, n} }
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "Example FFS Device"},
		{Type: oid(1), Value: "0"}, {Type: oid(2), Value: "0"}, {Type: oid(3), Value: "A2EXAMPLE0TYPE"},
	}}}, key)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// BenchmarkSignDir: hil sign --csr-dir on b.N fresh CSRs in one run (station start-up, ledger,
// audit log and chain files included), ns/op per CSR; beside it the FFS provisioning guide's
// openssl x509 -req run once per CSR for up to 50 of the same CSRs, and the ratio.
func BenchmarkSignDir(b *testing.B) {
	sb := newSignBench(b)
	csrDir := filepath.Join(b.TempDir(), "csr")
	if err := os.Mkdir(csrDir, 0o755); err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := range b.N {
		name := filepath.Join(csrDir, fmt.Sprintf("device-%07d.csr", i))
		if err := os.WriteFile(name, exampleCSR(b), 0o644); err != nil {
			b.Fatal(err)
		}
		names = append(names, name)
	}
	outDir := filepath.Join(b.TempDir(), "chains")
	var stdout, stderr bytes.Buffer
	b.ResetTimer()
	start := time.Now()
	if err := run(context.Background(), []string{"sign", "--bench", sb.file, "--csr-dir", csrDir, "--out", outDir}, &stdout, &stderr); err != nil {
		b.Fatalf("%v\n%s", err, stderr.String())
	}
	hil := time.Since(start)
	b.StopTimer()

	n := min(b.N, 50)
	sslDir := b.TempDir()
	start = time.Now()
	for i, csr := range names[:n] {
		out, err := exec.Command("openssl", "x509", "-req", "-in", csr, "-extfile", sb.profile, "-extensions", "req_ext",
			"-CA", sb.dak.Certificate, "-CAkey", sb.dak.Key, "-days", "1825", "-sha256",
			"-out", filepath.Join(sslDir, fmt.Sprintf("%d.pem", i))).CombinedOutput()
		if err != nil {
			b.Fatalf("openssl x509 -req: %v\n%s", err, out)
		}
	}
	perSSL := time.Since(start) / time.Duration(n)
	perHil := hil / time.Duration(b.N)
	b.ReportMetric(float64(perSSL.Microseconds()), "openssl-us/CSR")
	b.ReportMetric(float64(perSSL)/float64(perHil), "ratio")
}

// startPCSCD starts pcscd when it is installed and not running (as scripts/deps.sh and CI do);
// without it the test is skipped (failed with CI=true).
func startPCSCD(t *testing.T) {
	t.Helper()
	if exec.Command("pgrep", "-x", "pcscd").Run() == nil {
		return
	}
	skip := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("pcscd"); err != nil {
		skip("pcscd is not installed (scripts/deps.sh installs it with vsmartcard-vpcd)")
	}
	if out, err := exec.Command("pcscd").CombinedOutput(); err != nil {
		skip(fmt.Sprintf("starting pcscd: %v %s", err, out))
	}
	for range 50 {
		if _, err := os.Stat("/run/pcscd/pcscd.comm"); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	skip("pcscd did not open its socket")
}

// hil sign with the DAK on a virtual YubiKey (through pcscd): the right PIN file signs; a wrong
// one is tried once and remembered, not tried again unchanged; with one retry left the guard
// tries nothing. The card's retry counter proves what was tried; no PIN reaches the output.
func TestSignYubiKeyPINGuard(t *testing.T) {
	startPCSCD(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	yk, err := simbench.StartVirtualYubiKey(ctx, filepath.Join(dir, "card"), filepath.Join(dir, "dak"), "127.0.0.1:35963")
	if err != nil {
		t.Fatal(err)
	}
	defer yk.Close()
	sb := newSignBench(t)
	csr := opensslCSR(t, sb.dir, "device", sb.profile)
	pinFile := filepath.Join(dir, "pin")
	b := *sb.b
	b.Signer = yk.Signer
	b.Signer.PINFile, b.Signer.StateDir = pinFile, filepath.Join(dir, "state")
	if err := os.WriteFile(pinFile, []byte(yksim.DefaultPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	benchFile := filepath.Join(dir, "yubikey.yaml")
	if err := b.Write(benchFile); err != nil {
		t.Fatal(err)
	}
	sign := func(pin string) (stdout, stderr string, code int) {
		t.Helper()
		if pin != "" {
			// A new file each time: an edited PIN file may be tried again.
			tmp := pinFile + ".new"
			if err := os.WriteFile(tmp, []byte(pin+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, pinFile); err != nil {
				t.Fatal(err)
			}
		}
		cmd := hilProc(ctx, "sign", "--bench", benchFile, "--csr", csr)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"123456", "1111111", "2222222", "3333333"} {
			if strings.Contains(out.String()+errOut.String(), p) {
				t.Errorf("the output quotes PIN %s", p)
			}
		}
		return out.String(), errOut.String(), code
	}
	retries := func() int { pin, _ := yk.Card.Retries(); return pin }

	out, errOut, code := sign(yksim.DefaultPIN)
	if code != 0 {
		t.Fatalf("the right PIN: exit %d: %s", code, errOut)
	}
	chainFile := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chainFile, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, yk.Signer.Roots[0], chainFile)
	full := retries()

	for _, c := range []struct {
		pin     string // "" keeps the file as it is
		want    string
		retries int
	}{
		{"1111111", "wrong", full - 1},
		{"", "fix the file first", full - 1},
		{"2222222", "wrong", full - 2},
		{"3333333", "allow_last_retry", full - 2}, // one left: not tried without allow_last_retry
	} {
		out, errOut, code := sign(c.pin)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("PIN file %q: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, a reason saying %q", c.pin, code, out, errOut, c.want)
		}
		if got := retries(); got != c.retries {
			t.Errorf("PIN file %q: the card has %d retries left, want %d", c.pin, got, c.retries)
		}
	}
}

// hil sign through the signing agent: the agent's pipeline signs and counts (a budget of 3 stops
// the fourth CSR, named), and a second run gets the same chains without new signatures.
func TestSignThroughAgent(t *testing.T) {
	t.Parallel()
	sb := newSignBench(t)
	serving := *sb.b
	serving.Signer.MaxSignatures = 3
	serving.Signer.StateDir = filepath.Join(sb.dir, "state")
	sockDir, err := os.MkdirTemp("", "hil-sign-agent-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	serving.Signer.Socket = filepath.Join(sockDir, "agent.sock")
	servingFile := filepath.Join(sb.dir, "serving.yaml")
	if err := serving.Write(servingFile); err != nil {
		t.Fatal(err)
	}
	client := *sb.b
	client.Signer = bench.SignerConfig{Type: bench.SignerAgent, Socket: serving.Signer.Socket, Roots: sb.b.Signer.Roots}
	clientFile := filepath.Join(sb.dir, "client.yaml")
	if err := client.Write(clientFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serveCtx, stopServe := context.WithCancel(ctx)
	var serveOut syncBuffer
	served := make(chan error, 1)
	go func() {
		served <- run(serveCtx, []string{"signer", "serve", "--bench", servingFile}, &serveOut, &serveOut)
	}()
	defer func() {
		stopServe()
		if err := <-served; err != nil {
			t.Errorf("signer serve: %v\n%s", err, serveOut.String())
		}
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(serving.Signer.Socket); err == nil {
			break
		}
		if i > 400 {
			t.Fatalf("agent did not start:\n%s", serveOut.String())
		}
		time.Sleep(25 * time.Millisecond)
	}

	csrDir := filepath.Join(sb.dir, "csr")
	if err := os.Mkdir(csrDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		opensslCSR(t, csrDir, fmt.Sprintf("device-%d", i), sb.profile)
	}
	outDir := filepath.Join(sb.dir, "chains")
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"sign", "--bench", clientFile, "--csr-dir", csrDir, "--out", outDir, "--jobs", "1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 of 4 CSRs refused") || !strings.Contains(stderr.String(), "device-3.csr") || !strings.Contains(stderr.String(), "budget") {
		t.Fatalf("err %v, want device-3.csr refused by the budget\n%s", err, stderr.String())
	}
	first := map[int][]byte{}
	for i := range 3 {
		f := filepath.Join(outDir, fmt.Sprintf("device-%d.pem", i))
		opensslVerify(t, sb.dak.RootCertificate, f)
		first[i] = mustRead(t, f)
	}
	if _, err := os.Stat(filepath.Join(outDir, "device-3.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a chain for the refused CSR: %v", err)
	}
	// Again for one that was signed: the same chain from the agent's ledger, within the budget.
	out, errOut, code := shell(t, sb.dir, `hil sign --bench "$1" < csr/device-1.csr`, clientFile)
	if code != 0 || out != string(first[1]) {
		t.Errorf("second sign through the agent: exit %d, same chain %v, stderr %q", code, out == string(first[1]), errOut)
	}
}

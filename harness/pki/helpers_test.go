package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Paths of the shared fixtures; made absolute by TestMain because openssl
// runs in temporary directories.
var (
	fixtureProfile = "../../fixtures/profiles/device.conf"
	fixtureDevPKI  = "../../fixtures/pki/dev-pki.sh"
)

// testPKIDir is made once per test binary by TestMain with the fixture
// recipe: root.key/.pem, dak.key, dak.pem (SKID), dak-noskid.pem, dak-self.pem.
var testPKIDir string

func TestMain(m *testing.M) {
	code := func() int {
		if _, err := exec.LookPath("openssl"); err != nil {
			fmt.Fprintln(os.Stderr, "harness/pki tests use the real openssl as a judge; install it:", err)
			return 1
		}
		for _, p := range []*string{&fixtureProfile, &fixtureDevPKI} {
			abs, err := filepath.Abs(*p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			*p = abs
		}
		dir, err := os.MkdirTemp("", "hilbench-pki-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		testPKIDir = filepath.Join(dir, "pki")
		out, err := exec.Command("sh", fixtureDevPKI, testPKIDir).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "making the test PKI: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// openssl runs the real openssl in dir and returns stdout; failure is fatal.
func openssl(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	out, err := opensslErr(dir, nil, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// opensslErr runs openssl and returns stdout, or an error with stderr.
func opensslErr(dir string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.Bytes(), nil
}

func pkiPath(name string) string { return filepath.Join(testPKIDir, name) }

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

var dakKeyOnce struct {
	sync.Once
	key *ecdsa.PrivateKey
	err error
}

// dakKey is the test PKI's DAK private key (SEC 1 PEM, as openssl ecparam writes).
func dakKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	dakKeyOnce.Do(func() {
		data, err := os.ReadFile(pkiPath("dak.key"))
		if err != nil {
			dakKeyOnce.err = err
			return
		}
		block, _ := pem.Decode(data)
		if block == nil {
			dakKeyOnce.err = fmt.Errorf("dak.key: no PEM")
			return
		}
		dakKeyOnce.key, dakKeyOnce.err = x509.ParseECPrivateKey(block.Bytes)
	})
	if dakKeyOnce.err != nil {
		t.Fatal(dakKeyOnce.err)
	}
	return dakKeyOnce.key
}

// countingSigner counts Sign calls, so tests can prove nothing was signed.
type countingSigner struct {
	crypto.Signer
	calls atomic.Int32
}

func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

// signerOnly hides everything but Public and Sign, like a hardware key.
type signerOnly struct{ s crypto.Signer }

func (h signerOnly) Public() crypto.PublicKey { return h.s.Public() }
func (h signerOnly) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return h.s.Sign(r, d, o)
}

// makeCSR makes a CSR with the real openssl as the FFS provisioning guide does:
// openssl req -new -nodes -config CONF -newkey ec:PARAMS. params is an
// ecparam curve name ("prime256v1") or "rsa:2048"; extra args are appended.
func makeCSR(t testing.TB, dir, conf, params string, extra ...string) []byte {
	t.Helper()
	newkey := params
	if !strings.HasPrefix(params, "rsa:") {
		pf := filepath.Join(dir, params+".params")
		if _, err := os.Stat(pf); err != nil {
			openssl(t, dir, "ecparam", "-name", params, "-out", pf)
		}
		newkey = "ec:" + pf
	}
	keyOut := filepath.Join(dir, "device.key")
	args := append([]string{"req", "-new", "-nodes", "-config", conf, "-newkey", newkey, "-keyout", keyOut}, extra...)
	return openssl(t, dir, args...)
}

// writeFile writes data into dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// profileVariant copies the fixture device.conf with replacements applied
// (old -> new, each must occur) into dir and returns its path.
func profileVariant(t testing.TB, dir string, repl ...string) string {
	t.Helper()
	data, err := os.ReadFile(fixtureProfile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("profile variant: %q not in device.conf", repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	f, err := os.CreateTemp(dir, "device-*.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func loadFixtureProfile(t testing.TB) *Profile {
	t.Helper()
	p, err := LoadProfile(fixtureProfile, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readFileT(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package pki

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCompressedPublicKeyMatchesFFSGuide runs the FFS manufacturing guide's procedure with openssl
// (x509 -pubkey; ec -pubin -conv_form compressed; drop header lines and
// newlines) and compares, for keys of both Y parities.
func TestCompressedPublicKeyMatchesFFSGuide(t *testing.T) {
	dir := t.TempDir()
	p := loadFixtureProfile(t)
	is := &Issuer{Profile: p, Signer: dakKey(t), CA: readCert(t, pkiPath("dak.pem"))}
	seen := map[byte]bool{}
	for i := 0; i < 32 && len(seen) < 2; i++ {
		got, err := is.Issue(makeCSR(t, dir, fixtureProfile, "prime256v1"))
		if err != nil {
			t.Fatal(err)
		}
		certPath := writeFile(t, dir, "device-certificate.pem", EncodeChainPEM(got.Chain[:1]))
		pub := openssl(t, dir, "x509", "-pubkey", "-noout", "-in", certPath)
		pubPath := writeFile(t, dir, "pub.pem", pub)
		comp := openssl(t, dir, "ec", "-pubin", "-in", pubPath, "-conv_form", "compressed")
		var want strings.Builder
		for _, line := range strings.Split(string(comp), "\n") {
			if !strings.HasPrefix(line, "-----") {
				want.WriteString(strings.TrimSpace(line))
			}
		}
		ours, err := CompressedPublicKey(got.Certificate.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if ours != want.String() {
			t.Fatalf("ours %s\nthe FFS manufacturing guide's procedure %s", ours, want.String())
		}
		if len(ours) != 80 || !strings.HasPrefix(ours, "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgA") {
			t.Fatalf("unexpected form %q", ours)
		}
		seen[ours[35]] = true // 'C' for 02 (even Y), 'D' for 03 (odd Y)
		// The ECDH form of the same key gives the same string.
		ek, err := got.Certificate.PublicKey.(*ecdsa.PublicKey).ECDH()
		if err != nil {
			t.Fatal(err)
		}
		if again, err := CompressedPublicKey(ek); err != nil || again != ours {
			t.Errorf("ecdh key: %q %v", again, err)
		}
	}
	if !seen['C'] || !seen['D'] {
		t.Errorf("did not see both prefixes in 32 keys: %v", seen)
	}
}

func TestCompressedPublicKeyRefusesOtherKeys(t *testing.T) {
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]any{"P-384": &k384.PublicKey, "X25519": x25519.PublicKey(), "RSA": &rsa.PublicKey{}, "nil": nil} {
		if s, err := CompressedPublicKey(pub); !errors.Is(err, ErrUnsupportedKey) || s != "" {
			t.Errorf("%s: want ErrUnsupportedKey, got %q %v", name, s, err)
		}
	}
}

// TestControlLogPublicKeyMatchesFFSProvisioningGuide runs the FFS provisioning guide's pipeline
// `openssl x509 -pubkey -noout | openssl enc -base64 -d | openssl enc -base64`.
func TestControlLogPublicKeyMatchesFFSProvisioningGuide(t *testing.T) {
	got := issueTestChain(t, "dak.pem")
	dir := t.TempDir()
	certPath := writeFile(t, dir, "device-certificate.pem", EncodeChainPEM(got.Chain[:1]))
	cmd := exec.Command("sh", "-c", `openssl x509 -in "$1" -pubkey -noout | openssl enc -base64 -d | openssl enc -base64`, "sh", certPath)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 || len(lines[0]) != 64 {
		t.Errorf("expected openssl enc -base64 to wrap at 64 columns: %q", lines)
	}
	if ours := ControlLogPublicKey(got.Certificate); ours != strings.Join(lines, "") || strings.Contains(ours, "\n") {
		t.Errorf("ours %q, the FFS provisioning guide's pipeline %q", ours, out)
	}
}

func TestFingerprintMatchesOpenSSL(t *testing.T) {
	got := issueTestChain(t, "dak.pem")
	dir := t.TempDir()
	certPath := writeFile(t, dir, "device-certificate.pem", EncodeChainPEM(got.Chain[:1]))
	out := string(openssl(t, dir, "x509", "-in", certPath, "-noout", "-fingerprint", "-sha256"))
	_, hexPart, ok := strings.Cut(strings.TrimSpace(out), "=")
	if !ok {
		t.Fatalf("openssl printed %q", out)
	}
	want := strings.ToLower(strings.ReplaceAll(hexPart, ":", ""))
	if fp := Fingerprint(got.Certificate); fp != want || len(fp) != 64 {
		t.Errorf("ours %s, openssl %s", fp, want)
	}
}

func TestSamePublicKey(t *testing.T) {
	a, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dak := readCert(t, pkiPath("dak.pem"))
	data, err := os.ReadFile(pkiPath("dak-noskid.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	noskid, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, _ := a.PublicKey.ECDH()
	cases := []struct {
		name string
		x, y any
		want bool
	}{
		{"same key", &a.PublicKey, &a.PublicKey, true},
		{"same key from two certificates", dak.PublicKey, noskid.PublicKey, true},
		{"DAK certificate and DAK key", dak.PublicKey, dakKey(t).Public(), true},
		{"different keys", &a.PublicKey, &b.PublicKey, false},
		{"ecdsa vs ecdh form", &a.PublicKey, ek, false},
		{"nil", nil, &a.PublicKey, false},
		{"nil other", &a.PublicKey, nil, false},
		{"no Equal method", struct{}{}, struct{}{}, false},
	}
	for _, c := range cases {
		if got := SamePublicKey(c.x, c.y); got != c.want {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
}

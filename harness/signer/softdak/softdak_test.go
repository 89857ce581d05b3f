package softdak_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
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

	"hilbench/harness/signer"
	"hilbench/harness/signer/softdak"
)

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
}

// openssl runs openssl in dir and returns its combined output.
func openssl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func initDev(t *testing.T, opts softdak.InitOptions) *softdak.InitResult {
	t.Helper()
	r, err := softdak.InitDevelopment(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("InitDevelopment: %v", err)
	}
	return r
}

func TestInitDevelopmentWithOpenSSL(t *testing.T) {
	needOpenSSL(t)
	r := initDev(t, softdak.InitOptions{CommonName: "Bench 3 DAK", Organization: "Example Corp", Country: "DE"})
	dir := r.Dir

	want := []string{r.RootKey, r.RootCertificate, r.Config, r.Key, r.CSR, r.Certificate}
	if fmt.Sprint(r.Written) != fmt.Sprint(want) {
		t.Errorf("Written = %v, want %v", r.Written, want)
	}
	for _, p := range want {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		wantMode := fs.FileMode(0o644)
		if p == r.Key || p == r.RootKey {
			wantMode = 0o600
		}
		if fi.Mode().Perm() != wantMode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(p), fi.Mode().Perm(), wantMode)
		}
	}

	openssl(t, dir, "verify", "-CAfile", softdak.RootCertificateFile, softdak.CertificateFile)
	if out := openssl(t, dir, "req", "-verify", "-in", softdak.CSRFile, "-noout"); !strings.Contains(out, "verify OK") {
		t.Errorf("openssl req -verify: %s", out)
	}
	openssl(t, dir, "pkey", "-in", softdak.KeyFile, "-noout")
	openssl(t, dir, "pkey", "-in", softdak.RootKeyFile, "-noout")
	if head, _ := os.ReadFile(r.Key); !strings.HasPrefix(string(head), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("DAK key is not PKCS#8 PEM")
	}

	// dak.conf must describe the same subject as the CSR: let openssl make
	// a CSR from it with the same key and compare.
	openssl(t, dir, "req", "-new", "-config", softdak.ConfigFile, "-key", softdak.KeyFile, "-out", "openssl.csr")
	ours := openssl(t, dir, "req", "-in", softdak.CSRFile, "-noout", "-subject")
	theirs := openssl(t, dir, "req", "-in", "openssl.csr", "-noout", "-subject")
	if ours != theirs || !strings.Contains(ours, "CN = Bench 3 DAK") || !strings.Contains(ours, "C = DE") {
		t.Errorf("subjects differ: ours %q, openssl from dak.conf %q", ours, theirs)
	}

	text := openssl(t, dir, "x509", "-in", softdak.CertificateFile, "-noout", "-text")
	for _, s := range []string{
		"CA:TRUE, pathlen:0",
		"Digital Signature, Certificate Sign",
		"X509v3 Subject Key Identifier",
		"X509v3 Authority Key Identifier",
		"ecdsa-with-SHA256",
		"Issuer: O = Example Corp, CN = hilbench development root CA (NOT FOR PRODUCTION)",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("DAK certificate lacks %q:\n%s", s, text)
		}
	}
	if got := r.DAK.NotAfter.Sub(r.DAK.NotBefore); got < 3649*24*time.Hour || got > 3651*24*time.Hour {
		t.Errorf("DAK validity %v, want about 10 years", got)
	}
	if got := r.Root.NotAfter.Sub(r.Root.NotBefore); got < 7299*24*time.Hour || got > 7301*24*time.Hour {
		t.Errorf("root validity %v, want about 20 years", got)
	}
	if string(r.DAK.AuthorityKeyId) != string(r.Root.SubjectKeyId) || len(r.DAK.SubjectKeyId) == 0 {
		t.Errorf("SKID/AKID do not link DAK to root")
	}

	d, err := softdak.Open(r.Key, r.Certificate)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// The opened DAK must sign with the certified key.
	digest := sha256.Sum256([]byte("device certificate"))
	sig, err := d.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(r.DAK.PublicKey.(*ecdsa.PublicKey), digest[:], sig) {
		t.Error("signature does not verify with the DAK certificate's key")
	}
	if _, err := d.Sign(rand.Reader, digest[:20], crypto.SHA256); err == nil {
		t.Error("Sign accepted a digest of the wrong length")
	}
}

func TestInitDevelopmentRefusesOverwrite(t *testing.T) {
	r := initDev(t, softdak.InitOptions{})
	before, _ := os.ReadFile(r.Key)

	_, err := softdak.InitDevelopment(r.Dir, softdak.InitOptions{})
	var ee *softdak.ExistsError
	if !errors.As(err, &ee) || !errors.Is(err, fs.ErrExist) || len(ee.Paths) != 6 {
		t.Fatalf("second InitDevelopment = %v, want ExistsError for 6 files", err)
	}
	if !strings.Contains(err.Error(), "dak_private_key.pem") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("message: %v", err)
	}
	if after, _ := os.ReadFile(r.Key); string(after) != string(before) {
		t.Fatal("refused InitDevelopment changed the key")
	}

	// One existing file is enough to refuse; nothing else may be written.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, softdak.CertificateFile), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := softdak.InitDevelopment(dir, softdak.InitOptions{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("InitDevelopment over dak-certificate.pem = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("refused InitDevelopment left %d files", len(entries))
	}

	// Force replaces, with a fresh key, and the key mode stays 0600 even if
	// the old file was looser.
	if err := os.Chmod(r.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	r2, err := softdak.InitDevelopment(r.Dir, softdak.InitOptions{Force: true})
	if err != nil {
		t.Fatalf("forced InitDevelopment: %v", err)
	}
	if after, _ := os.ReadFile(r2.Key); string(after) == string(before) {
		t.Error("Force did not replace the key")
	}
	if fi, _ := os.Stat(r2.Key); fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced key mode %v", fi.Mode().Perm())
	}
	if _, err := softdak.Open(r2.Key, r2.Certificate); err != nil {
		t.Errorf("Open after Force: %v", err)
	}
}

func TestInitDevelopmentOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts softdak.InitOptions
		msg  string
	}{
		{"comment char", softdak.InitOptions{CommonName: "DAK #1"}, `common name "DAK #1": character '#'`},
		{"variable", softdak.InitOptions{Organization: "$HOME"}, `organization "$HOME": character '$'`},
		{"newline", softdak.InitOptions{OrganizationalUnit: "a\nb"}, `organizational unit`},
		{"country", softdak.InitOptions{Country: "DEU"}, `want a two-letter code`},
		{"dak outlives root", softdak.InitOptions{DAKDays: 100, RootDays: 10}, `must not exceed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := softdak.InitDevelopment(dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("InitDevelopment = %v, want %q", err, tc.msg)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("failed InitDevelopment wrote %d files", len(entries))
			}
		})
	}
}

func TestOpenRefusesLooseKeyMode(t *testing.T) {
	r := initDev(t, softdak.InitOptions{})
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o620, 0o602} {
		if err := os.Chmod(r.Key, mode); err != nil {
			t.Fatal(err)
		}
		_, err := softdak.Open(r.Key, r.Certificate)
		if !errors.Is(err, softdak.ErrInsecureKeyFile) {
			t.Fatalf("mode %04o: Open = %v, want ErrInsecureKeyFile", mode, err)
		}
		for _, s := range []string{r.Key, fmt.Sprintf("%04o", mode), "chmod 600 " + r.Key} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("mode %04o: message %q lacks %q", mode, err, s)
			}
		}
	}
	if err := os.Chmod(r.Key, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := softdak.Open(r.Key, r.Certificate); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestOpenRefusesMismatchedCertificate(t *testing.T) {
	a := initDev(t, softdak.InitOptions{})
	b := initDev(t, softdak.InitOptions{})
	_, err := softdak.Open(a.Key, b.Certificate)
	if !errors.Is(err, signer.ErrKeyMismatch) {
		t.Fatalf("Open = %v, want ErrKeyMismatch", err)
	}
	if !strings.Contains(err.Error(), a.Key) || !strings.Contains(err.Error(), b.Certificate) {
		t.Errorf("message does not name the files: %v", err)
	}
}

func TestOpenRefusesExpiredCertificate(t *testing.T) {
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	r := initDev(t, softdak.InitOptions{Now: func() time.Time { return past }, DAKDays: 30, RootDays: 60})
	_, err := softdak.Open(r.Key, r.Certificate)
	if !errors.Is(err, signer.ErrExpired) {
		t.Fatalf("Open = %v, want ErrExpired", err)
	}
	if !strings.Contains(err.Error(), "expired on 2001-03-05") {
		t.Errorf("message lacks the expiry date: %v", err)
	}
	// The clock seam: the same DAK opens at a time inside its validity.
	if _, err := (softdak.Opener{Now: func() time.Time { return past.AddDate(0, 0, 1) }}).Open(r.Key, r.Certificate); err != nil {
		t.Errorf("Open inside validity: %v", err)
	}
	_, err = (softdak.Opener{Now: func() time.Time { return past.AddDate(0, 0, -1) }}).Open(r.Key, r.Certificate)
	if !errors.Is(err, signer.ErrNotYetValid) {
		t.Errorf("Open before validity = %v, want ErrNotYetValid", err)
	}
}

// TestOpenSeedFlow makes a DAK exactly as the FFS provisioning guide does, with openssl, in
// every key encoding openssl produces, and opens it.
func TestOpenSeedFlow(t *testing.T) {
	needOpenSSL(t)
	r := initDev(t, softdak.InitOptions{})
	dir := r.Dir
	openssl(t, dir, "ecparam", "-name", "prime256v1", "-out", "dak-params.pem")
	openssl(t, dir, "req", "-new", "-nodes", "-config", "dak.conf", "-newkey", "ec:dak-params.pem",
		"-keyout", "seed_key.pem", "-out", "seed.csr")
	ext := "[ dak ]\nbasicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, digitalSignature\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
	if err := os.WriteFile(filepath.Join(dir, "ext.conf"), []byte(ext), 0o644); err != nil {
		t.Fatal(err)
	}
	openssl(t, dir, "x509", "-req", "-in", "seed.csr", "-CA", softdak.RootCertificateFile, "-CAkey", softdak.RootKeyFile,
		"-CAcreateserial", "-days", "30", "-sha256", "-extfile", "ext.conf", "-extensions", "dak", "-out", "seed-cert.pem")

	sec1 := openssl(t, dir, "ec", "-in", "seed_key.pem")
	params, _ := os.ReadFile(filepath.Join(dir, "dak-params.pem"))
	keys := map[string]string{
		"pkcs8 from openssl req":        "seed_key.pem",
		"sec1 from openssl ec":          "sec1.pem",
		"sec1 after ecparam parameters": "params-sec1.pem",
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("sec1.pem", sec1)
	write("params-sec1.pem", string(params)+sec1)
	if err := os.Chmod(filepath.Join(dir, "seed_key.pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, file := range keys {
		t.Run(name, func(t *testing.T) {
			d, err := softdak.Open(filepath.Join(dir, file), filepath.Join(dir, "seed-cert.pem"), r.RootCertificate)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if n := len(d.Chain()); n != 2 {
				t.Errorf("chain has %d certificates, want DAK + intermediate", n)
			}
		})
	}

	t.Run("encrypted", func(t *testing.T) {
		for name, args := range map[string][]string{
			"pkcs8":  {"pkey", "-in", "seed_key.pem", "-aes256", "-passout", "pass:secret"},
			"legacy": {"ec", "-in", "seed_key.pem", "-aes256", "-passout", "pass:secret"},
		} {
			write("enc.pem", openssl(t, dir, args...))
			_, err := softdak.Open(filepath.Join(dir, "enc.pem"), filepath.Join(dir, "seed-cert.pem"))
			if !errors.Is(err, softdak.ErrEncryptedKey) {
				t.Errorf("%s: Open = %v, want ErrEncryptedKey", name, err)
			} else if !strings.Contains(err.Error(), "enc.pem") || !strings.Contains(err.Error(), "unencrypted") {
				t.Errorf("%s: message %v", name, err)
			}
		}
	})
}

func TestOpenBadFiles(t *testing.T) {
	r := initDev(t, softdak.InitOptions{})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	// A key-shaped block whose body is not a key: the error must not echo it.
	junkBody := []byte("this-is-secret-material-0123456789")
	junkPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: junkBody})
	good, _ := os.ReadFile(r.Key)

	for _, tc := range []struct {
		name     string
		key      string
		cert     string
		is       error
		contains string
	}{
		{name: "missing key", key: filepath.Join(dir, "nope.pem"), cert: r.Certificate, is: fs.ErrNotExist},
		{name: "missing cert", key: r.Key, cert: filepath.Join(dir, "nope.pem"), is: fs.ErrNotExist},
		{name: "empty key", key: write("empty.pem", nil), cert: r.Certificate, is: softdak.ErrNoKey},
		{name: "ed25519", key: write("ed.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})), cert: r.Certificate, is: softdak.ErrUnsupportedKey},
		{name: "junk key", key: write("junk.pem", junkPEM), cert: r.Certificate, contains: `parsing "PRIVATE KEY" block: malformed DER`},
		{name: "two keys", key: write("two.pem", append(append([]byte{}, good...), good...)), cert: r.Certificate, contains: "more than one private key"},
		{name: "rsa block", key: write("rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}})), cert: r.Certificate, contains: `unexpected PEM block "RSA PRIVATE KEY"`},
		{name: "key as cert", key: r.Key, cert: r.Key, contains: `unexpected PEM block "PRIVATE KEY"`},
		{name: "empty cert", key: r.Key, cert: write("nocert.pem", []byte("nothing here\n")), is: softdak.ErrNoCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := softdak.Open(tc.key, tc.cert)
			if err == nil {
				t.Fatal("Open accepted bad input")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Open = %v, want errors.Is %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("Open = %v, want it to contain %q", err, tc.contains)
			}
			for _, secret := range []string{string(junkBody), string(good[30:60])} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks key material: %v", err)
				}
			}
		})
	}
}

func TestDescriptionHidesKey(t *testing.T) {
	r := initDev(t, softdak.InitOptions{CommonName: "Example DAK"})
	d, err := softdak.Open(r.Key, r.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("softdak %s (CN=Example DAK, expires %s)", r.Key, r.DAK.NotAfter.UTC().Format("2006-01-02"))
	if got := d.Description(); got != want {
		t.Errorf("Description = %q, want %q", got, want)
	}
	if d.Certificate() != d.Chain()[0] || len(d.Chain()) != 1 {
		t.Error("Chain/Certificate disagree")
	}
	// fmt verbs must go through String/GoString, not dump struct fields.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, d); !strings.Contains(s, "softdak "+r.Key) || strings.Contains(s, "PrivateKey") {
			t.Errorf("%s prints %q", verb, s)
		}
	}
}

package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issueTestChain issues a device certificate under the test DAK.
func issueTestChain(t *testing.T, dak string) *Issued {
	t.Helper()
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	got, err := (&Issuer{Profile: loadFixtureProfile(t), Signer: dakKey(t), CA: readCert(t, pkiPath(dak))}).Issue(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestParseChainPEM(t *testing.T) {
	got := issueTestChain(t, "dak.pem")
	chain, err := ParseChainPEM(got.ChainPEM)
	if err != nil || len(chain) != 2 || !chain[0].Equal(got.Certificate) || !chain[1].Equal(got.Chain[1]) {
		t.Fatalf("round trip: %v", err)
	}
	if !bytes.Equal(EncodeChainPEM(chain), got.ChainPEM) {
		t.Error("EncodeChainPEM(ParseChainPEM(x)) != x")
	}
	// What a device prints back may have CRLF line ends and a trailing newline.
	if _, err := ParseChainPEM(append(bytes.ReplaceAll(got.ChainPEM, []byte("\n"), []byte("\r\n")), '\n')); err != nil {
		t.Errorf("CRLF chain: %v", err)
	}

	leafPEM, dakPEM := splitPEM(t, got.ChainPEM)
	csrPEM := makeCSR(t, t.TempDir(), fixtureProfile, "prime256v1")
	cases := []struct {
		name    string
		data    []byte
		want    error
		index   int
		message string
	}{
		{"empty", nil, ErrChainEmpty, -1, "empty"},
		{"blank", []byte(" \n\r\n"), ErrChainEmpty, -1, "empty"},
		{"not PEM", []byte("No such file\n"), ErrChainPEM, 0, "chain certificate 1 (leaf): not PEM"},
		{"garbage between", concat(leafPEM, []byte("junk\n"), dakPEM), ErrChainPEM, 1, "chain certificate 2: unexpected text after certificate 1"},
		{"trailing garbage", concat(leafPEM, dakPEM, []byte("$ ")), ErrChainPEM, 2, "unexpected text after certificate 2"},
		{"CSR block", concat(leafPEM, csrPEM), ErrChainBlockType, 1, `"CERTIFICATE REQUEST", want CERTIFICATE`},
		{"truncated second block", concat(leafPEM, dakPEM[:len(dakPEM)-40]), ErrChainPEM, 1, "no END line"},
		{"truncated first block", concat(leafPEM[:len(leafPEM)-40], []byte("\n"), dakPEM), ErrChainPEM, 0, "no END line"},
		{"bad DER", concat(leafPEM, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), ErrChainParse, 1, "chain certificate 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chain, err := ParseChainPEM(c.data)
			if chain != nil || !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Index != c.index {
				t.Errorf("want ChainError at index %d, got %#v", c.index, err)
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("message %q does not contain %q", err, c.message)
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// splitPEM splits a two-certificate chain into its PEM blocks.
func splitPEM(t *testing.T, chain []byte) ([]byte, []byte) {
	t.Helper()
	const end = "-----END CERTIFICATE-----\n"
	i := bytes.Index(chain, []byte(end))
	if i < 0 {
		t.Fatal("no END")
	}
	return chain[:i+len(end)], chain[i+len(end):]
}

func TestVerifyChain(t *testing.T) {
	got := issueTestChain(t, "dak.pem")
	root := readCert(t, pkiPath("root.pem"))
	self := readCert(t, pkiPath("dak-self.pem"))
	now := time.Now()
	leaf, dak := got.Chain[0], got.Chain[1]
	// A leaf that outlives its DAK (the DAK is valid 3650 days).
	longLived, err := (&Issuer{Profile: loadFixtureProfile(t), Signer: dakKey(t), CA: dak, Validity: 4000 * 24 * time.Hour}).
		Issue(makeCSR(t, t.TempDir(), fixtureProfile, "prime256v1"))
	if err != nil {
		t.Fatal(err)
	}

	if err := VerifyChain(got.Chain, []*x509.Certificate{root}, now); err != nil {
		t.Errorf("leaf+DAK to root: %v", err)
	}
	if err := VerifyChain(append(got.Chain, root), []*x509.Certificate{root}, now); err != nil {
		t.Errorf("chain including the root: %v", err)
	}
	if err := VerifyChain(got.Chain, nil, now); err != nil {
		t.Errorf("DAK as anchor: %v", err)
	}
	if err := VerifyChain([]*x509.Certificate{leaf}, []*x509.Certificate{dak}, now); err != nil {
		t.Errorf("leaf with the DAK as root: %v", err)
	}

	cases := []struct {
		name  string
		chain []*x509.Certificate
		roots []*x509.Certificate
		now   time.Time
		want  error
		index int
	}{
		{"empty", nil, nil, now, ErrChainEmpty, -1},
		{"leaf only, no roots", []*x509.Certificate{leaf}, nil, now, ErrChainUntrusted, -1},
		{"wrong order", []*x509.Certificate{dak, leaf}, nil, now, ErrChainOrder, 0},
		{"wrong DAK", []*x509.Certificate{leaf, self}, nil, now, ErrChainOrder, 0},
		{"other root", got.Chain, []*x509.Certificate{self}, now, ErrChainUntrusted, 1},
		{"before issuance", got.Chain, []*x509.Certificate{root}, leaf.NotBefore.Add(-time.Second), ErrChainValidity, 0},
		{"after expiry", got.Chain, []*x509.Certificate{root}, leaf.NotAfter.Add(time.Second), ErrChainValidity, 0},
		{"DAK expired, leaf not", longLived.Chain, []*x509.Certificate{root}, dak.NotAfter.Add(time.Hour), ErrChainValidity, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifyChain(c.chain, c.roots, c.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Index != c.index {
				t.Errorf("want index %d, got %#v", c.index, err)
			}
		})
	}

	// A tampered leaf (same issuer, altered signature) is caught.
	bad := *leaf
	bad.Signature = bytes.Clone(leaf.Signature)
	bad.Signature[len(bad.Signature)-1] ^= 1
	if err := VerifyChain([]*x509.Certificate{&bad, dak}, nil, now); !errors.Is(err, ErrChainOrder) {
		t.Errorf("tampered signature: %v", err)
	}
}

// TestVerifyChainConstraints: a DAK certificate with CA:FALSE cannot issue;
// VerifyChain and openssl verify both refuse the chain.
func TestVerifyChainConstraints(t *testing.T) {
	dir := t.TempDir()
	ext := writeFile(t, dir, "noca.cnf", []byte("[e]\nbasicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\n"))
	dakCSR := writeFile(t, dir, "dak.csr", openssl(t, dir, "req", "-new", "-config", fixtureProfile, "-key", pkiPath("dak.key"), "-subj", "/CN=Not a CA"))
	out := filepath.Join(dir, "dak-noca.pem")
	openssl(t, dir, "x509", "-req", "-in", dakCSR, "-CA", pkiPath("root.pem"), "-CAkey", pkiPath("root.key"),
		"-days", "30", "-sha256", "-extfile", ext, "-extensions", "e", "-out", out)
	issued, err := (&Issuer{Profile: loadFixtureProfile(t), Signer: dakKey(t), CA: readCert(t, out)}).Issue(makeCSR(t, dir, fixtureProfile, "prime256v1"))
	if err != nil {
		t.Fatal(err)
	}
	root := readCert(t, pkiPath("root.pem"))
	if err := VerifyChain(issued.Chain, []*x509.Certificate{root}, time.Now()); !errors.Is(err, ErrChainConstraints) {
		t.Errorf("DAK with CA:FALSE as intermediate: want ErrChainConstraints, got %v", err)
	}
	chainPath := writeFile(t, dir, "chain.pem", issued.ChainPEM)
	if out, err := opensslErr(dir, nil, "verify", "-CAfile", pkiPath("root.pem"), "-untrusted", chainPath, chainPath); err == nil {
		t.Errorf("openssl verify accepted a CA:FALSE issuer: %s", out)
	}
}

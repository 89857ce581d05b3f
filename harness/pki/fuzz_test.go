package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzCheckCSR: whatever CheckCSR accepts is a CSR crypto/x509 parses, with an EC P-256 key and
// an ecdsa-with-SHA256 self-signature that verifies; whatever it refuses is a *CSRError. With
// wrap, the input is the DER of a CERTIFICATE REQUEST block, so that mutations reach the ASN.1.
func FuzzCheckCSR(f *testing.F) {
	dir := f.TempDir()
	p := loadFixtureProfile(f)
	for _, csrPEM := range [][]byte{
		makeCSR(f, dir, fixtureProfile, "prime256v1"),
		makeCSR(f, dir, fixtureProfile, "secp384r1"),
		makeCSR(f, dir, fixtureProfile, "rsa:1024"),
	} {
		f.Add(csrPEM, false)
		block, _ := pem.Decode(csrPEM)
		f.Add(block.Bytes, true)
		f.Add(block.Bytes[:len(block.Bytes)-9], true)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"), false)
	f.Add([]byte("-----BEGIN NEW CERTIFICATE REQUEST-----\n"), false)
	f.Add([]byte("garbage"), false)
	f.Fuzz(func(t *testing.T, in []byte, wrap bool) {
		if wrap {
			in = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: in})
		}
		csr, err := p.CheckCSR(in)
		if err != nil {
			var ce *CSRError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCSRRejected) || csr != nil {
				t.Fatalf("CheckCSR refused with %T %v (csr %v)", err, err, csr != nil)
			}
			return
		}
		block, _ := pem.Decode(in)
		if block == nil {
			t.Fatalf("CheckCSR accepted %q, which pem.Decode does not read", in)
		}
		again, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			t.Fatalf("CheckCSR accepted a CSR crypto/x509 does not parse: %v", err)
		}
		if !bytes.Equal(again.Raw, csr.Raw) {
			t.Fatalf("CheckCSR's CSR is not the PEM's first block")
		}
		if err := again.CheckSignature(); err != nil || again.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Fatalf("CheckCSR accepted a CSR whose signature (%v) does not verify: %v", again.SignatureAlgorithm, err)
		}
		if pub, ok := again.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Fatalf("CheckCSR accepted a %T key", again.PublicKey)
		}
	})
}

// FuzzParseChainPEM: a chain ParseChainPEM accepts has at least one certificate, and written back
// with EncodeChainPEM parses to the same certificates; a refusal is a *ChainError. With wrap, the
// input is the DER of one CERTIFICATE block.
func FuzzParseChainPEM(f *testing.F) {
	dak, err := os.ReadFile(pkiPath("dak.pem"))
	if err != nil {
		f.Fatal(err)
	}
	root, err := os.ReadFile(pkiPath("root.pem"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(append([]byte{}, dak...), root...), false)
	f.Add(append(append([]byte{}, dak...), "trailing text\n"...), false)
	f.Add(bytes.Replace(dak, []byte("CERTIFICATE"), []byte("X509 CRL"), 2), false)
	f.Add([]byte("\n\n"), false)
	block, _ := pem.Decode(dak)
	f.Add(block.Bytes, true)
	f.Add(block.Bytes[:len(block.Bytes)/2], true)
	f.Fuzz(func(t *testing.T, in []byte, wrap bool) {
		if wrap {
			in = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: in})
		}
		chain, err := ParseChainPEM(in)
		if err != nil {
			var ce *ChainError
			if !errors.As(err, &ce) || chain != nil {
				t.Fatalf("ParseChainPEM refused with %T %v", err, err)
			}
			return
		}
		if len(chain) == 0 {
			t.Fatal("ParseChainPEM accepted an empty chain")
		}
		again, err := ParseChainPEM(EncodeChainPEM(chain))
		if err != nil || len(again) != len(chain) {
			t.Fatalf("the chain written back does not parse: %v", err)
		}
		for i := range chain {
			if !again[i].Equal(chain[i]) {
				t.Fatalf("certificate %d differs once written back", i)
			}
		}
	})
}

// FuzzParseProfile: any device.conf of up to 16 KiB parses or is refused with a *ProfileError,
// without a panic and within a second (expansion is capped), and parsing is deterministic (the
// same subject fields twice).
func FuzzParseProfile(f *testing.F) {
	data, err := os.ReadFile(fixtureProfile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("[ req ]\ndistinguished_name = dn\nprompt = no\n[ dn ]\nCN = $ENV::HOME\n"))
	f.Add([]byte("a = 1\nb = $a$a\n[ s ]\nc = ${a}x$(b)\nd = $s::c\n.include x\n"))
	f.Add([]byte("[ req\nx = \"quoted \\\" # not a comment\" # comment\\\ncontinued\n"))
	f.Add([]byte("oid_section = oids\n[ oids ]\nDeviceTypeId = 1.3.6.1.4.1.4843.1.1\n"))
	// issue 11 item 5: $var expansion nested 8 levels deep (2 GB uncapped); refused at 64 KiB.
	bomb := "v0 = " + strings.Repeat("x", 64) + "\n"
	for i := 1; i <= 8; i++ {
		bomb += fmt.Sprintf("v%d = %s\n", i, strings.Repeat(fmt.Sprintf("$v%d", i-1), 16))
	}
	f.Add([]byte(bomb))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			t.Skip()
		}
		start := time.Now()
		p, err := ParseProfile("fuzz.conf", data, ProfileOptions{})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("ParseProfile took %v", d)
		}
		if err != nil {
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseProfile refused with %T %v", err, err)
			}
			return
		}
		again, err := ParseProfile("fuzz.conf", data, ProfileOptions{})
		if err != nil || len(again.Subject) != len(p.Subject) {
			t.Fatalf("ParseProfile is not deterministic: %v", err)
		}
		for i := range p.Subject {
			if p.Subject[i].Name != again.Subject[i].Name || !p.Subject[i].OID.Equal(again.Subject[i].OID) {
				t.Fatalf("subject field %d: %v, then %v", i, p.Subject[i], again.Subject[i])
			}
		}
	})
}

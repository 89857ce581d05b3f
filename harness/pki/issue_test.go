package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// withExtSection returns the fixture device.conf with the [ req_ext ] body
// replaced by body and extra appended (more sections).
func withExtSection(t testing.TB, body, extra string) []byte {
	t.Helper()
	data, err := os.ReadFile(fixtureProfile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	start := strings.Index(s, "[ req_ext ]")
	end := strings.Index(s, "[ v3_req ]")
	if start < 0 || end < start {
		t.Fatal("fixture device.conf no longer has [ req_ext ] before [ v3_req ]")
	}
	return []byte(s[:start] + "[ req_ext ]\n" + body + "\n\n" + s[end:] + "\n" + extra + "\n")
}

// opensslIssue runs the FFS provisioning guide's command and returns the certificate, or the error.
func opensslIssue(dir, csrPath, confPath, section, caFile string) (*x509.Certificate, error) {
	out := filepath.Join(dir, "openssl-device-certificate.pem")
	os.Remove(out)
	if _, err := opensslErr(dir, nil, "x509", "-req", "-in", csrPath, "-extfile", confPath, "-extensions", section,
		"-CA", caFile, "-CAkey", pkiPath("dak.key"), "-days", "1825", "-sha256", "-out", out); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("openssl wrote no PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// sameAsOpenSSL issues with the harness using openssl's serial and time, so
// the TBSCertificate must come out byte-identical.
func sameAsOpenSSL(t *testing.T, theirs *x509.Certificate, p *Profile, caFile string, csrPEM []byte) {
	t.Helper()
	serial := theirs.SerialNumber.FillBytes(make([]byte, 20))
	signer := &countingSigner{Signer: dakKey(t)}
	is := &Issuer{
		Profile:  p,
		Signer:   signer,
		CA:       readCert(t, caFile),
		Validity: theirs.NotAfter.Sub(theirs.NotBefore), // openssl reads the clock twice
		Now:      func() time.Time { return theirs.NotBefore },
		Rand:     io.MultiReader(bytes.NewReader(serial), rand.Reader),
	}
	got, err := is.Issue(csrPEM)
	if err != nil {
		t.Fatalf("harness refused what openssl issued: %v", err)
	}
	if !bytes.Equal(got.Certificate.RawTBSCertificate, theirs.RawTBSCertificate) {
		dir := t.TempDir()
		a := writeFile(t, dir, "ours.der", got.Certificate.Raw)
		b := writeFile(t, dir, "theirs.der", theirs.Raw)
		t.Fatalf("TBSCertificate differs from openssl's\nours:\n%s\nopenssl:\n%s",
			openssl(t, dir, "asn1parse", "-inform", "DER", "-in", a, "-i"),
			openssl(t, dir, "asn1parse", "-inform", "DER", "-in", b, "-i"))
	}
	if n := signer.calls.Load(); n != 1 {
		t.Errorf("signer called %d times, want 1", n)
	}
}

var (
	serialLine    = regexp.MustCompile(`(?m)^(\s*Serial Number:)\s*\n\s*[0-9a-f:]+$`)
	serialInline  = regexp.MustCompile(`(?m)^(\s*Serial Number:).*$`)
	validityLine  = regexp.MustCompile(`(?m)^(\s*Not (Before|After) *:).*$`)
	signatureHex  = regexp.MustCompile(`(?m)^(\s*Signature Value:)\n(\s+[0-9a-f:]+\n?)+`)
	publicKeyHex  = regexp.MustCompile(`(?m)^(\s*pub:)\n(\s+[0-9a-f:]+\n?)+`)
	skidHexAnchor = regexp.MustCompile(`Subject Key Identifier: \n\s+([0-9A-F:]+)`)
)

// maskText hides what legitimately differs between two issuances of the same
// CSR: serial, validity dates, signature value.
func maskText(s string) string {
	s = serialLine.ReplaceAllString(s, "$1 <serial>")
	s = serialInline.ReplaceAllString(s, "$1 <serial>")
	s = validityLine.ReplaceAllString(s, "$1 <date>")
	s = signatureHex.ReplaceAllString(s, "$1 <signature>\n")
	return s
}

func certText(t *testing.T, dir, name string, c *x509.Certificate) string {
	t.Helper()
	p := writeFile(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	return string(openssl(t, dir, "x509", "-in", p, "-noout", "-text"))
}

// TestIssueMatchesOpenSSL is the field-by-field judge: the same CSR,
// device.conf and DAK through the FFS provisioning guide's openssl command and through Issue.
func TestIssueMatchesOpenSSL(t *testing.T) {
	for _, ca := range []string{"dak.pem", "dak-noskid.pem", "dak-self.pem"} {
		t.Run(ca, func(t *testing.T) {
			dir := t.TempDir()
			csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
			csrPath := writeFile(t, dir, "device.csr", csrPEM)
			theirs, err := opensslIssue(dir, csrPath, fixtureProfile, "req_ext", pkiPath(ca))
			if err != nil {
				t.Fatal(err)
			}
			p := loadFixtureProfile(t)

			// Byte-identical TBSCertificate given openssl's serial and clock.
			sameAsOpenSSL(t, theirs, p, pkiPath(ca), csrPEM)

			// Independent issuance: -text equal once serial, dates and signature are masked.
			is := &Issuer{Profile: p, Signer: signerOnly{dakKey(t)}, CA: readCert(t, pkiPath(ca))}
			ours, err := is.Issue(csrPEM)
			if err != nil {
				t.Fatal(err)
			}
			a, b := maskText(certText(t, dir, "ours.pem", ours.Certificate)), maskText(certText(t, dir, "theirs.pem", theirs))
			if a != b {
				t.Errorf("openssl x509 -text differs after masking\nours:\n%s\nopenssl:\n%s", a, b)
			}
			if !strings.Contains(a, "<serial>") || !strings.Contains(a, "Not After : <date>") || !strings.Contains(a, "Signature Value: <signature>") {
				t.Errorf("masking did not apply; text:\n%s", a)
			}
			const days1825 = 1825 * 24 * time.Hour
			if d := ours.Certificate.NotAfter.Sub(ours.Certificate.NotBefore); d != days1825 {
				t.Errorf("validity %v, want exactly 1825 days", d)
			}
			if d := theirs.NotAfter.Sub(theirs.NotBefore); d != days1825 {
				t.Errorf("openssl validity %v, want 1825 days", d)
			}
			// The same key identifiers and extension criticality, explicitly.
			if len(ours.Certificate.Extensions) != len(theirs.Extensions) {
				t.Fatalf("%d extensions, openssl wrote %d", len(ours.Certificate.Extensions), len(theirs.Extensions))
			}
			for i, e := range ours.Certificate.Extensions {
				o := theirs.Extensions[i]
				if !e.Id.Equal(o.Id) || e.Critical != o.Critical || !bytes.Equal(e.Value, o.Value) {
					t.Errorf("extension %d: ours %v critical=%v %x, openssl %v critical=%v %x", i, e.Id, e.Critical, e.Value, o.Id, o.Critical, o.Value)
				}
			}
			if m := skidHexAnchor.FindStringSubmatch(a); m == nil {
				t.Errorf("no subjectKeyIdentifier in the device certificate:\n%s", a)
			}
		})
	}
}

// TestIssuedChainsPassOpenSSLVerify: every chain Issue returns passes
// openssl verify, anchored at the dev root or at the DAK.
func TestIssuedChainsPassOpenSSLVerify(t *testing.T) {
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	p := loadFixtureProfile(t)
	cases := []struct {
		ca     string
		verify [][]string // openssl verify argument sets; "LEAF" and "CHAIN" are replaced
	}{
		{"dak.pem", [][]string{
			{"-x509_strict", "-CAfile", pkiPath("root.pem"), "-untrusted", pkiPath("dak.pem"), "LEAF"},
			{"-CAfile", pkiPath("root.pem"), "-untrusted", "CHAIN", "LEAF"},
			{"-partial_chain", "-CAfile", pkiPath("dak.pem"), "LEAF"},
		}},
		{"dak-noskid.pem", [][]string{
			{"-CAfile", pkiPath("root.pem"), "-untrusted", pkiPath("dak-noskid.pem"), "LEAF"},
			{"-partial_chain", "-CAfile", pkiPath("dak-noskid.pem"), "LEAF"},
		}},
		{"dak-self.pem", [][]string{
			{"-x509_strict", "-CAfile", pkiPath("dak-self.pem"), "LEAF"},
		}},
	}
	for _, c := range cases {
		t.Run(c.ca, func(t *testing.T) {
			dak := readCert(t, pkiPath(c.ca))
			is := &Issuer{Profile: p, Signer: dakKey(t), CA: dak}
			var roots []*x509.Certificate
			if c.ca != "dak-self.pem" {
				is.Intermediates = nil
				roots = []*x509.Certificate{readCert(t, pkiPath("root.pem"))}
			}
			got, err := is.Issue(csrPEM)
			if err != nil {
				t.Fatal(err)
			}
			chainPath := writeFile(t, dir, "chain-"+c.ca, got.ChainPEM)
			leafPath := writeFile(t, dir, "leaf-"+c.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: got.Certificate.Raw}))
			for _, args := range c.verify {
				full := []string{"verify"}
				for _, a := range args {
					a = strings.ReplaceAll(a, "LEAF", leafPath)
					a = strings.ReplaceAll(a, "CHAIN", chainPath)
					full = append(full, a)
				}
				out, err := opensslErr(dir, nil, full...)
				if err != nil || !bytes.Contains(out, []byte(": OK")) {
					t.Errorf("openssl %s: %v %s", strings.Join(full, " "), err, out)
				}
			}
			// Our own verifier agrees, with roots and with the DAK as anchor.
			if err := VerifyChain(got.Chain, roots, time.Now()); err != nil {
				t.Errorf("VerifyChain with roots: %v", err)
			}
			if err := VerifyChain(got.Chain, nil, time.Now()); err != nil {
				t.Errorf("VerifyChain with the DAK as anchor: %v", err)
			}
		})
	}
}

// TestIssueExtensionVariants compares Issue with openssl for many extension
// sections: identical TBSCertificate when openssl succeeds, an error from
// the harness (and no signature) when openssl fails, and a loud
// ErrProfileUnsupported for what the harness deliberately does not do.
func TestIssueExtensionVariants(t *testing.T) {
	const (
		same        = "same"
		bothFail    = "bothfail"
		unsupported = "unsupported"
		// refusedInvalid: openssl issues, but crypto/x509 cannot parse the
		// result (RFC 5280 violations); the harness refuses the profile.
		refusedInvalid = "refusedInvalid"
	)
	type variant struct {
		body, extra string
		daks        []string
		want        string
	}
	both := []string{"dak.pem", "dak-noskid.pem"}
	one := []string{"dak.pem"}
	variants := []variant{
		{"basicConstraints = critical, CA:FALSE", "", both, same},
		{"", "", one, same}, // no extensions: openssl writes a v1 certificate
		{"subjectKeyIdentifier=none\nauthorityKeyIdentifier=none", "", one, same},
		{"subjectKeyIdentifier=none", "", both, same},
		{"subjectKeyIdentifier=hash\nsubjectKeyIdentifier=none", "", one, same},
		{"authorityKeyIdentifier=keyid,issuer\nbasicConstraints = critical, CA:FALSE\nsubjectKeyIdentifier=hash", "", both, same},
		{"authorityKeyIdentifier=keyid:always,issuer:always", "", one, same},
		{"authorityKeyIdentifier=keyid:always,issuer:always", "", []string{"dak-noskid.pem"}, bothFail},
		{"authorityKeyIdentifier=issuer", "", both, same},
		{"authorityKeyIdentifier=issuer:always", "", both, same},
		{"authorityKeyIdentifier=keyid", "", one, same},
		{"authorityKeyIdentifier=keyid", "", []string{"dak-noskid.pem"}, bothFail},
		{"authorityKeyIdentifier=keyid,issuer:always", "", both, same},
		{"authorityKeyIdentifier=keyid:always,issuer", "", one, same},
		{"authorityKeyIdentifier=issuer,keyid", "", both, same},
		{"authorityKeyIdentifier=serial", "", one, bothFail},
		{"basicConstraints=CA:FALSE,pathlen:3", "", one, same},
		{"basicConstraints=critical,CA:TRUE,pathlen:0", "", one, same},
		{"basicConstraints=CA:true", "", one, same},
		{"basicConstraints = critical , CA:FALSE", "", one, bothFail},
		{"basicConstraints = CA:maybe", "", one, bothFail},
		{"keyUsage = critical, digitalSignature, keyAgreement", "", one, same},
		{"keyUsage=Digital Signature, decipherOnly", "", one, same},
		{"keyUsage=digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment,keyAgreement,keyCertSign,cRLSign,encipherOnly,decipherOnly", "", one, same},
		{"keyUsage=critical,cRLSign", "", one, same},
		{"keyUsage=digitalSignature,digitalSignature", "", one, same},
		{"keyUsage=digitalSignature,", "", one, bothFail},
		{"keyUsage=signing", "", one, bothFail},
		{"extendedKeyUsage=clientAuth", "", one, same},
		{"extendedKeyUsage=serverAuth,1.2.3.4,TLS Web Client Authentication", "", one, same},
		{"extendedKeyUsage=anyExtendedKeyUsage,OCSPSigning,1.3.6.1.5.5.7.3.8,msCodeInd,secureShellClient", "", one, same},
		{"extendedKeyUsage=critical,clientAuth,clientAuth", "", one, same},
		{"extendedKeyUsage=DeviceTypeId", "", one, bothFail}, // x509 -extfile does not load oid_section
		{"subjectKeyIdentifier=01:02:AB", "", one, same},
		{"subjectKeyIdentifier = 0102ab", "", one, same},
		{"subjectKeyIdentifier = critical,hash", "", one, refusedInvalid},
		{"authorityKeyIdentifier = critical,keyid", "", one, refusedInvalid},
		{"subjectAltName=DNS:a.example, IP:10.0.0.1, IP:::1, email:x@y.z, URI:http://a/b, RID:1.2.3", "", one, same},
		{"subjectAltName=DNS:*.a, DNS: b , email:a@b, IP:2001:db8::7", "", one, same},
		{"subjectAltName=@alt", "[ alt ]\nDNS.1 = one.example\nDNS.2 = two.example\nIP.1 = 192.0.2.1", one, same},
		{"subjectAltName=DNS:", "", one, bothFail},
		{"subjectAltName=IP:not-an-ip", "", one, bothFail},
		{"subjectAltName=otherName:1.2.3;UTF8:x", "", one, unsupported},
		{"1.2.3.4 = ASN1:UTF8String:  hello, world ", "", one, same},
		{"1.2.3.5=critical,DER:01:02:ab", "", one, same},
		{"1.2.3.4=ASN1:IA5STRING:x", "", one, same},
		{"1.2.3.4=ASN1:INTEGER:0x10", "", one, same},
		{"1.2.3.4=ASN1:INT:-5", "", one, same},
		{"1.2.3.4=ASN1:INT:1234567890123456789012345", "", one, same},
		{"1.2.3.4=ASN1:BOOLEAN:TRUE", "", one, same},
		{"1.2.3.4=ASN1:BOOL:no", "", one, same},
		{"1.2.3.4=ASN1:OID:1.2.3", "", one, same},
		{"1.2.3.4=ASN1:OID:commonName", "", one, same},
		{"1.2.3.4=ASN1:NULL", "", one, same},
		{"1.2.3.4=ASN1:OCTETSTRING:abc", "", one, same},
		{"1.2.3.4=ASN1:PRINTABLESTRING:ab cd", "", one, same},
		{"1.2.3.4=ASN1:utf8string:ab", "", one, same},
		{"1.2.3.4=ASN1: UTF8:ab", "", one, same},
		{"1.2.3.4=ASN1:UTF8String:", "", one, same},
		{"1.2.3.4=DER: 0102", "", one, same},
		{"1.2.3.4=critical,ASN1:PRINTABLE:a_b", "", one, bothFail},
		{"1.2.3.4=ASN1:BOGUSTYPE:x", "", one, bothFail},
		{"1.2.3.4=ASN1:SEQUENCE:seq", "[ seq ]\na=INT:1", one, unsupported},
		{"commonName=ASN1:UTF8:x", "", one, same},
		{"DeviceTypeId=ASN1:UTF8:x", "", one, bothFail}, // oid_section names are unknown to x509 -extfile
		{"1.2.3.4=hello", "", one, bothFail},
		{"nsComment=hello", "", one, unsupported},
		{"certificatePolicies=1.2.3.4", "", one, unsupported},
		{"basicConstraints=CA:FALSE\n2.5.29.19=DER:3000", "", one, unsupported},
		{"noSuchExtension=foo", "", one, bothFail},
	}
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	csrPath := writeFile(t, dir, "device.csr", csrPEM)
	for i, v := range variants {
		for _, ca := range v.daks {
			name := strings.ReplaceAll(v.body, "\n", "|") + "/" + ca
			t.Run(name, func(t *testing.T) {
				confPath := writeFile(t, dir, "variant.conf", withExtSection(t, v.body, v.extra))
				theirs, oerr := opensslIssue(dir, csrPath, confPath, "req_ext", pkiPath(ca))
				if v.want == refusedInvalid {
					// openssl issues it; Go's parser is what refuses.
					if oerr == nil || !strings.Contains(oerr.Error(), "critical") {
						t.Fatalf("expected openssl to issue a certificate crypto/x509 rejects: %v", oerr)
					}
				}
				p, perr := ParseProfile(confPath, withExtSection(t, v.body, v.extra), ProfileOptions{})
				switch v.want {
				case same:
					if oerr != nil {
						t.Fatalf("variant %d: test expects openssl to succeed: %v", i, oerr)
					}
					if perr != nil {
						t.Fatalf("harness refused a profile openssl accepts: %v", perr)
					}
					sameAsOpenSSL(t, theirs, p, pkiPath(ca), csrPEM)
				case bothFail:
					if oerr == nil {
						t.Fatalf("variant %d: test expects openssl to fail, it issued", i)
					}
					if perr != nil {
						var pe *ProfileError
						if !errors.As(perr, &pe) || pe.Line == 0 || pe.Key == "" {
							t.Errorf("profile error should name line and key: %#v", perr)
						}
						return
					}
					signer := &countingSigner{Signer: dakKey(t)}
					_, err := (&Issuer{Profile: p, Signer: signer, CA: readCert(t, pkiPath(ca))}).Issue(csrPEM)
					if err == nil {
						t.Fatalf("harness issued where openssl fails (%v)", oerr)
					}
					if signer.calls.Load() != 0 {
						t.Errorf("signer called for a failed issuance")
					}
				case unsupported, refusedInvalid:
					want := ErrProfileUnsupported
					if v.want == refusedInvalid {
						want = ErrProfileInvalidValue
					}
					if !errors.Is(perr, want) {
						t.Fatalf("want %v, got %v", want, perr)
					}
					if !strings.Contains(perr.Error(), "req_ext") {
						t.Errorf("error should name the section: %v", perr)
					}
				}
			})
		}
	}
}

// TestIssueAKIDWithoutSKIDIsTyped: a profile that needs the DAK's key id
// fails with ErrIssuerKeyID when the DAK certificate has none, before signing.
func TestIssueAKIDWithoutSKIDIsTyped(t *testing.T) {
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	p, err := ParseProfile("akid.conf", withExtSection(t, "authorityKeyIdentifier=keyid", ""), ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer := &countingSigner{Signer: dakKey(t)}
	_, err = (&Issuer{Profile: p, Signer: signer, CA: readCert(t, pkiPath("dak-noskid.pem"))}).Issue(csrPEM)
	if !errors.Is(err, ErrIssuerKeyID) {
		t.Fatalf("want ErrIssuerKeyID, got %v", err)
	}
	if signer.calls.Load() != 0 {
		t.Error("signed although issuance failed")
	}
}

func TestIssueSerialNumbers(t *testing.T) {
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	is := &Issuer{Profile: loadFixtureProfile(t), Signer: dakKey(t), CA: readCert(t, pkiPath("dak.pem"))}
	seen := map[string]bool{}
	for range 20 {
		got, err := is.Issue(csrPEM)
		if err != nil {
			t.Fatal(err)
		}
		s := got.Certificate.SerialNumber
		if s.Sign() <= 0 || s.BitLen() > 159 {
			t.Fatalf("serial %x: want positive, at most 159 bits", s)
		}
		if seen[s.String()] {
			t.Fatalf("serial %x repeated", s)
		}
		seen[s.String()] = true
	}

	// The serial comes from Rand: the top bit is cleared as openssl does.
	ff := bytes.Repeat([]byte{0xff}, 20)
	is.Rand = io.MultiReader(bytes.NewReader(ff), rand.Reader)
	got, err := is.Issue(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if want := "7fffffffffffffffffffffffffffffffffffffff"; got.Certificate.SerialNumber.Text(16) != want {
		t.Errorf("serial %x, want %s", got.Certificate.SerialNumber, want)
	}
	// An all-zero draw is retried, a dead random source is an error.
	is.Rand = io.MultiReader(bytes.NewReader(make([]byte, 20)), rand.Reader)
	if got, err := is.Issue(csrPEM); err != nil || got.Certificate.SerialNumber.Sign() <= 0 {
		t.Errorf("zero draw: %v", err)
	}
	is.Rand = bytes.NewReader(nil)
	if _, err := is.Issue(csrPEM); err == nil || !errors.Is(err, io.EOF) {
		t.Errorf("empty random source: want an EOF error, got %v", err)
	}
}

func TestIssueValidityAndClock(t *testing.T) {
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	now := time.Date(2049, 6, 1, 12, 30, 45, 999_000_000, time.FixedZone("X", 3600))
	// A DAK valid until the 2060s (the shared one expires earlier).
	longDAK := writeFile(t, dir, "dak-long.pem", openssl(t, dir, "req", "-new", "-x509", "-config", fixtureProfile, "-extensions", "v3_req",
		"-key", pkiPath("dak.key"), "-subj", "/CN=Long-lived DAK", "-days", "16000", "-sha256"))
	is := &Issuer{Profile: loadFixtureProfile(t), Signer: dakKey(t), CA: readCert(t, longDAK),
		Now: func() time.Time { return now }}
	got, err := is.Issue(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Certificate
	if want := now.UTC().Truncate(time.Second); !c.NotBefore.Equal(want) {
		t.Errorf("NotBefore %v, want %v", c.NotBefore, want)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d != 1825*24*time.Hour {
		t.Errorf("validity %v", d)
	}
	// notBefore 2049 is UTCTime, notAfter 2054 is GeneralizedTime (RFC 5280 4.1.2.5).
	text := certText(t, dir, "y2050.pem", c)
	if !strings.Contains(text, "Not Before: Jun  1 11:30:45 2049 GMT") || !strings.Contains(text, "Not After : May 31 11:30:45 2054 GMT") {
		t.Errorf("openssl reads other dates:\n%s", text)
	}
	if !bytes.Contains(c.RawTBSCertificate, []byte("490601113045Z")) || !bytes.Contains(c.RawTBSCertificate, []byte("20540531113045Z")) {
		t.Error("time encodings are not UTCTime / GeneralizedTime as RFC 5280 requires")
	}
	is.Validity = 24 * time.Hour
	got, err = is.Issue(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Certificate.NotAfter.Sub(got.Certificate.NotBefore); d != 24*time.Hour {
		t.Errorf("Validity not honoured: %v", d)
	}
	is.Validity = -time.Hour
	if _, err := is.Issue(csrPEM); !errors.Is(err, ErrIssuerConfig) {
		t.Errorf("negative validity: %v", err)
	}

	// Outside the DAK's validity nothing is signed: the chain could not verify.
	dak := readCert(t, pkiPath("dak.pem"))
	for _, at := range []time.Time{dak.NotBefore.Add(-time.Hour), dak.NotAfter.Add(time.Hour)} {
		signer := &countingSigner{Signer: dakKey(t)}
		_, err := (&Issuer{Profile: loadFixtureProfile(t), Signer: signer, CA: dak, Now: func() time.Time { return at }}).Issue(csrPEM)
		if !errors.Is(err, ErrDAKNotValid) || signer.calls.Load() != 0 {
			t.Errorf("at %v: want ErrDAKNotValid and no signature, got %v", at, err)
		}
	}
}

// badSigner signs with some other key: Issue must notice.
type badSigner struct{ pub crypto.PublicKey }

func (b badSigner) Public() crypto.PublicKey { return b.pub }
func (b badSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return k.Sign(r, d, o)
}

type failingSigner struct{ pub crypto.PublicKey }

func (f failingSigner) Public() crypto.PublicKey { return f.pub }
func (f failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("token removed")
}

func TestIssuerConfigurationErrors(t *testing.T) {
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	p := loadFixtureProfile(t)
	dak := readCert(t, pkiPath("dak.pem"))
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		is   *Issuer
		want error
	}{
		{"no profile", &Issuer{Signer: dakKey(t), CA: dak}, ErrIssuerConfig},
		{"no signer", &Issuer{Profile: p, CA: dak}, ErrIssuerConfig},
		{"no CA", &Issuer{Profile: p, Signer: dakKey(t)}, ErrIssuerConfig},
		{"signer for another key", &Issuer{Profile: p, Signer: other, CA: dak}, ErrDAKKeyMismatch},
		{"signer produces wrong signatures", &Issuer{Profile: p, Signer: badSigner{dakKey(t).Public()}, CA: dak}, ErrIssuedSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.is.Issue(csrPEM)
			if !errors.Is(err, c.want) || got != nil {
				t.Fatalf("want %v, got %v (%v)", c.want, err, got)
			}
		})
	}
	_, err = (&Issuer{Profile: p, Signer: failingSigner{dakKey(t).Public()}, CA: dak}).Issue(csrPEM)
	if err == nil || !strings.Contains(err.Error(), "token removed") || !strings.Contains(err.Error(), "signing certificate") {
		t.Errorf("signer error should be wrapped with context: %v", err)
	}
}

// TestIssueRefusesTheDAKsOwnKey: a CSR made with the DAK key is refused.
func TestIssueRefusesTheDAKsOwnKey(t *testing.T) {
	dir := t.TempDir()
	csrPEM := openssl(t, dir, "req", "-new", "-config", fixtureProfile, "-key", pkiPath("dak.key"))
	signer := &countingSigner{Signer: dakKey(t)}
	_, err := (&Issuer{Profile: loadFixtureProfile(t), Signer: signer, CA: readCert(t, pkiPath("dak.pem"))}).Issue(csrPEM)
	if !errors.Is(err, ErrCSRKeyIsDAK) || signer.calls.Load() != 0 {
		t.Fatalf("want ErrCSRKeyIsDAK and no signature, got %v (%d calls)", err, signer.calls.Load())
	}
}

func TestIssuedFields(t *testing.T) {
	dir := t.TempDir()
	csrPEM := makeCSR(t, dir, fixtureProfile, "prime256v1")
	dak := readCert(t, pkiPath("dak.pem"))
	root := readCert(t, pkiPath("root.pem"))
	is := &Issuer{Profile: loadFixtureProfile(t), Signer: dakKey(t), CA: dak, Intermediates: []*x509.Certificate{root}}
	got, err := is.Issue(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Certificate
	if !SamePublicKey(c.PublicKey, got.CSR.PublicKey) {
		t.Error("leaf key is not the CSR key")
	}
	if !bytes.Equal(c.RawSubject, got.CSR.RawSubject) || !bytes.Equal(c.RawIssuer, dak.RawSubject) {
		t.Error("subject/issuer not copied raw")
	}
	if c.Version != 3 || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("version %d, algorithm %v", c.Version, c.SignatureAlgorithm)
	}
	if err := c.CheckSignatureFrom(dak); err != nil {
		t.Error(err)
	}
	if len(got.Chain) != 3 || got.Chain[1] != dak || got.Chain[2] != root {
		t.Fatalf("chain %v", got.Chain)
	}
	// ChainPEM is `cat device-certificate.pem dak-certificate.pem root.pem`.
	want := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	for _, f := range []string{"dak.pem", "root.pem"} {
		b, err := os.ReadFile(pkiPath(f))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	if !bytes.Equal(got.ChainPEM, want) {
		t.Errorf("ChainPEM is not the cat of the PEM files:\n%s\nwant:\n%s", got.ChainPEM, want)
	}
	parsed, err := ParseChainPEM(got.ChainPEM)
	if err != nil || len(parsed) != 3 || !parsed[0].Equal(c) {
		t.Errorf("ChainPEM does not round-trip: %v", err)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.IsCA {
		t.Errorf("extensions: ku=%v eku=%v ca=%v", c.KeyUsage, c.ExtKeyUsage, c.IsCA)
	}
	if !bytes.Equal(c.AuthorityKeyId, dak.SubjectKeyId) || len(c.SubjectKeyId) != 20 {
		t.Errorf("key ids: akid=%x skid=%x", c.AuthorityKeyId, c.SubjectKeyId)
	}
}

// TestIssueConcurrently: one Issuer serves parallel station slots.
func TestIssueConcurrently(t *testing.T) {
	p := loadFixtureProfile(t)
	csrs := profileCSRs(t, p, 64)
	signer := &countingSigner{Signer: dakKey(t)}
	is := &Issuer{Profile: p, Signer: signer, CA: readCert(t, pkiPath("dak.pem"))}
	const workers, each = 4, 8
	errs := make(chan error, workers*each)
	serials := make(chan string, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				got, err := is.Issue(csrs[(w*each+i)%len(csrs)])
				if err != nil {
					errs <- err
					continue
				}
				serials <- got.Certificate.SerialNumber.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(serials)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for s := range serials {
		if seen[s] {
			t.Errorf("serial %s issued twice", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each || signer.calls.Load() != workers*each {
		t.Errorf("%d certificates, %d signatures", len(seen), signer.calls.Load())
	}
}

package pki

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
)

var allCSRSentinels = []error{
	ErrCSRNotPEM, ErrCSRBlockType, ErrCSRTruncated, ErrCSRMalformed, ErrCSRKeyType, ErrCSRCurve,
	ErrCSRSignatureAlgorithm, ErrCSRSignature, ErrSubjectMissing, ErrDeviceType, ErrSubjectValue, ErrSubjectUnexpected,
}

// flipSignatureByte corrupts the CSR's signature (the last bytes of the DER
// are the signature's s value).
func flipSignatureByte(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		t.Fatal("no PEM")
	}
	der := bytes.Clone(block.Bytes)
	der[len(der)-3] ^= 0x5a
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// TestCheckCSRWithOpenSSLRequests: CSRs made by openssl req as in the FFS provisioning guide
// are accepted from the fixture device.conf and refused, each with its own
// sentinel, for every way they can be wrong. Issue never signs a refused CSR.
func TestCheckCSRWithOpenSSLRequests(t *testing.T) {
	dir := t.TempDir()
	p := loadFixtureProfile(t)
	good := makeCSR(t, dir, fixtureProfile, "prime256v1")
	dakPEM, err := os.ReadFile(pkiPath("dak.pem"))
	if err != nil {
		t.Fatal(err)
	}
	goodBlock, _ := pem.Decode(good)
	truncatedDER := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: goodBlock.Bytes[:len(goodBlock.Bytes)-20]})
	brokenSig := flipSignatureByte(t, good)
	// The independent judge agrees the flipped CSR is bad: the FFS provisioning guide's
	// command refuses it (openssl req -verify exits 0 either way in 3.0).
	if _, err := opensslErr(dir, brokenSig, "x509", "-req", "-CA", pkiPath("dak.pem"), "-CAkey", pkiPath("dak.key"), "-out", os.DevNull); err == nil ||
		!strings.Contains(err.Error(), "self-signature did not match") {
		t.Fatalf("openssl x509 -req should refuse the corrupted CSR: %v", err)
	}

	cases := []struct {
		name    string
		csr     []byte
		want    error
		message string // substring the error must contain
	}{
		{"RSA key", makeCSR(t, dir, fixtureProfile, "rsa:2048"), ErrCSRKeyType, "CSR key is RSA"},
		{"P-384 key", makeCSR(t, dir, fixtureProfile, "secp384r1"), ErrCSRCurve, "P-384"},
		{"secp256k1 key", makeCSR(t, dir, fixtureProfile, "secp256k1"), ErrCSRCurve, "secp256k1"},
		{"SHA-384 signature", makeCSR(t, dir, fixtureProfile, "prime256v1", "-sha384"), ErrCSRSignatureAlgorithm, "ecdsa-with-SHA384"},
		{"wrong device type", makeCSR(t, dir, profileVariant(t, dir, "DeviceTypeId = A2EXAMPLE0TYPE", "DeviceTypeId = XYZ"), "prime256v1"),
			ErrDeviceType, `CSR subject: DeviceTypeId (1.3.6.1.4.1.4843.1.3) is "XYZ", profile requires "A2EXAMPLE0TYPE"`},
		{"missing OID field", makeCSR(t, dir, profileVariant(t, dir, "Reserved2 = 0\n", ""), "prime256v1"),
			ErrSubjectMissing, `Reserved2 (1.3.6.1.4.1.4843.1.2) is missing, profile requires "0"`},
		{"missing device type", makeCSR(t, dir, profileVariant(t, dir, "DeviceTypeId = A2EXAMPLE0TYPE\n", ""), "prime256v1"),
			ErrSubjectMissing, "DeviceTypeId (1.3.6.1.4.1.4843.1.3) is missing"},
		{"wrong fixed value", makeCSR(t, dir, profileVariant(t, dir, "Reserved1 = 0", "Reserved1 = 1"), "prime256v1"),
			ErrSubjectValue, `Reserved1 (1.3.6.1.4.1.4843.1.1) is "1", profile requires "0"`},
		{"wrong CN", makeCSR(t, dir, profileVariant(t, dir, "CN = Example FFS Device", "CN = Other"), "prime256v1"),
			ErrSubjectValue, `CN (2.5.4.3) is "Other"`},
		{"extra attribute", makeCSR(t, dir, profileVariant(t, dir, "[ dn ]\n", "[ dn ]\nO = Extra Corp\n"), "prime256v1"),
			ErrSubjectUnexpected, `O (2.5.4.10) = "Extra Corp" is not in the profile`},
		{"repeated attribute", makeCSR(t, dir, profileVariant(t, dir, "Reserved2 = 0\n", "Reserved2 = 0\n1.Reserved1 = 0\n"), "prime256v1"),
			ErrSubjectUnexpected, "one Reserved1 more than the profile lists"},
		{"broken signature", brokenSig, ErrCSRSignature, "self-signature does not verify"},
		{"not PEM", []byte("ace: command not found\n"), ErrCSRNotPEM, "not PEM"},
		{"empty", nil, ErrCSRNotPEM, "not PEM"},
		{"text before PEM", append([]byte("# get_field 0x201\n"), good...), ErrCSRNotPEM, "before the PEM block"},
		{"certificate, not request", dakPEM, ErrCSRBlockType, `"CERTIFICATE"`},
		{"truncated PEM", good[:len(good)/2], ErrCSRTruncated, "no END line"},
		{"truncated DER", truncatedDER, ErrCSRTruncated, "truncated"},
		{"truncated, then another CSR", concat(good[:len(good)/2], []byte("\n"), good), ErrCSRTruncated, "no END line"},
		{"trailing text", append(bytes.Clone(good), "# \n"...), ErrCSRMalformed, "after the CSR"},
		{"bad base64", bytes.Replace(good, []byte("\n"), []byte("\n!!"), 2), ErrCSRMalformed, "base64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			csr, err := p.CheckCSR(c.csr)
			if csr != nil || !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			if !errors.Is(err, ErrCSRRejected) {
				t.Error("refusal does not match ErrCSRRejected")
			}
			for _, other := range allCSRSentinels {
				if other != c.want && errors.Is(err, other) {
					t.Errorf("error also matches %v; reasons must be distinct", other)
				}
			}
			var ce *CSRError
			if !errors.As(err, &ce) || ce.Reason != c.want {
				t.Errorf("not a *CSRError with Reason %v: %#v", c.want, err)
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("message %q does not contain %q", err, c.message)
			}
			signer := &countingSigner{Signer: dakKey(t)}
			is := &Issuer{Profile: p, Signer: signer, CA: readCert(t, pkiPath("dak.pem"))}
			if got, err := is.Issue(c.csr); got != nil || !errors.Is(err, c.want) {
				t.Errorf("Issue: want %v, got %v", c.want, err)
			}
			if n := signer.calls.Load(); n != 0 {
				t.Errorf("DAK signed %d times for a refused CSR", n)
			}
		})
	}

	t.Run("accepted", func(t *testing.T) {
		csr, err := p.CheckCSR(good)
		if err != nil {
			t.Fatal(err)
		}
		if got := csr.Subject.String(); !strings.Contains(got, "CN=Example FFS Device") {
			t.Errorf("subject %q", got)
		}
		// CSRs of the FFS guides from ACS devices may use the old header.
		if _, err := p.CheckCSR(bytes.ReplaceAll(good, []byte("CERTIFICATE REQUEST"), []byte("NEW CERTIFICATE REQUEST"))); err != nil {
			t.Errorf("NEW CERTIFICATE REQUEST header: %v", err)
		}
		if _, err := p.CheckCSR(append([]byte("\r\n  \n"), bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))...)); err != nil {
			t.Errorf("CRLF line endings and leading blank lines: %v", err)
		}
		signer := &countingSigner{Signer: dakKey(t)}
		is := &Issuer{Profile: p, Signer: signer, CA: readCert(t, pkiPath("dak.pem"))}
		if _, err := is.Issue(good); err != nil {
			t.Fatal(err)
		}
		if signer.calls.Load() != 1 {
			t.Errorf("signer called %d times", signer.calls.Load())
		}
	})
}

// TestCheckCSRPerDeviceFields: a per-device CN accepts any non-empty value
// and must be present.
func TestCheckCSRPerDeviceFields(t *testing.T) {
	dir := t.TempDir()
	strict := loadFixtureProfile(t)
	perDevice, err := LoadProfile(fixtureProfile, ProfileOptions{PerDeviceFields: []string{"commonName", "serialNumber"}})
	if err != nil {
		t.Fatal(err)
	}
	withSerial := profileVariant(t, dir, "CN = Example FFS Device", "CN = Device 0001\nserialNumber = G0C1234567")
	csr := makeCSR(t, dir, withSerial, "prime256v1")
	if _, err := perDevice.CheckCSR(csr); err != nil {
		t.Errorf("per-device CN and serialNumber refused: %v", err)
	}
	if _, err := strict.CheckCSR(csr); !errors.Is(err, ErrSubjectValue) {
		t.Errorf("fixed CN: want ErrSubjectValue, got %v", err)
	}
	noSerial := makeCSR(t, dir, profileVariant(t, dir, "CN = Example FFS Device", "CN = Device 0002"), "prime256v1")
	_, err = perDevice.CheckCSR(noSerial)
	var ce *CSRError
	if !errors.Is(err, ErrSubjectMissing) || !errors.As(err, &ce) || ce.Field != "serialNumber" {
		t.Errorf("missing per-device serialNumber: got %v", err)
	}
	if !strings.Contains(err.Error(), "per-device") {
		t.Errorf("message should say the field is per-device: %v", err)
	}
	var names []string
	for _, f := range perDevice.Subject {
		if f.PerDevice {
			names = append(names, f.Name)
		}
	}
	if strings.Join(names, ",") != "CN,serialNumber" {
		t.Errorf("per-device fields %v", names)
	}
}

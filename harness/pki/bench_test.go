package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"sync"
	"testing"
)

var benchCSRs struct {
	sync.Once
	pems [][]byte
	err  error
}

// profileCSRs makes n CSRs that satisfy the fixture profile, in Go (the
// openssl-made ones are in the tests; here only the cost of issuance counts).
func profileCSRs(tb testing.TB, p *Profile, n int) [][]byte {
	tb.Helper()
	benchCSRs.Do(func() {
		var names []pkix.AttributeTypeAndValue
		for _, f := range p.Subject {
			names = append(names, pkix.AttributeTypeAndValue{Type: f.OID, Value: f.Value})
		}
		for range n {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				benchCSRs.err = err
				return
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject:            pkix.Name{ExtraNames: names},
				SignatureAlgorithm: x509.ECDSAWithSHA256,
			}, k)
			if err != nil {
				benchCSRs.err = err
				return
			}
			benchCSRs.pems = append(benchCSRs.pems, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		}
	})
	if benchCSRs.err != nil {
		tb.Fatal(benchCSRs.err)
	}
	return benchCSRs.pems
}

// BenchmarkCheckAndIssue is one device's issuance: CSR check, TBS build,
// DAK signature (in-memory P-256), signature verification, chain PEM.
func BenchmarkCheckAndIssue(b *testing.B) {
	p := loadFixtureProfile(b)
	csrs := profileCSRs(b, p, 64)
	is := &Issuer{Profile: p, Signer: dakKey(b), CA: readCert(b, pkiPath("dak.pem"))}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := is.Issue(csrs[i%len(csrs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCheckCSR is the CSR check alone (parse, self-signature, subject).
func BenchmarkCheckCSR(b *testing.B) {
	p := loadFixtureProfile(b)
	csrs := profileCSRs(b, p, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := p.CheckCSR(csrs[i%len(csrs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestGoMadeCSRsPassTheProfile(t *testing.T) {
	p := loadFixtureProfile(t)
	for _, c := range profileCSRs(t, p, 64)[:4] {
		if _, err := p.CheckCSR(c); err != nil {
			t.Fatal(err)
		}
	}
}

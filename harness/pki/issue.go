package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// DefaultValidity is openssl x509 -days 1825 (the FFS provisioning guide).
const DefaultValidity = 1825 * 24 * time.Hour

// Issuer issues device certificates the way the FFS provisioning guide's
//
//	openssl x509 -req -in device.csr -extfile device.conf -extensions req_ext \
//	    -CA dak-certificate.pem -CAkey dak_private_key.pem -days 1825 -sha256
//
// does with OpenSSL 3.0, but in-process. An Issuer is safe for concurrent
// use when its Signer and Rand are.
type Issuer struct {
	Profile       *Profile
	Signer        crypto.Signer       // the DAK private key (may be a hardware key: only Public() and Sign() are available)
	CA            *x509.Certificate   // the DAK certificate
	Intermediates []*x509.Certificate // appended to the chain after the DAK certificate
	Validity      time.Duration       // default 1825 days (openssl -days 1825)
	Now           func() time.Time    // default time.Now
	Rand          io.Reader           // default crypto/rand.Reader (serial numbers; ECDSA nonces)
}

// InProcessSigner is implemented by DAK signers whose private key is in this process's memory
// (SoftDAK, whose Sign is Go's own ECDSA). The check after signing is for keys outside the
// process (a YubiKey answering from the wrong slot, a faulty token); an in-process signature is
// not checked again, and such signers may sign concurrently.
type InProcessSigner interface {
	crypto.Signer
	InProcess() bool
}

// SignsInProcess reports whether s is an in-process signer.
func SignsInProcess(s crypto.Signer) bool {
	ip, ok := s.(InProcessSigner)
	return ok && ip.InProcess()
}

// Issued is the result of one issuance.
type Issued struct {
	CSR         *x509.CertificateRequest
	Certificate *x509.Certificate
	Chain       []*x509.Certificate // leaf, DAK, intermediates
	ChainPEM    []byte              // leaf PEM + DAK PEM + intermediates PEM, exactly like `cat device-certificate.pem dak-certificate.pem`
}

func (is *Issuer) configError(format string, args ...any) error {
	return fmt.Errorf("issuer: %s: %w", fmt.Sprintf(format, args...), ErrIssuerConfig)
}

// check validates the configuration before anything is signed.
func (is *Issuer) check() (*ecdsa.PublicKey, error) {
	switch {
	case is.Profile == nil:
		return nil, is.configError("no Profile")
	case is.Signer == nil:
		return nil, is.configError("no Signer (DAK key)")
	case is.CA == nil:
		return nil, is.configError("no CA (DAK certificate)")
	case is.Validity < 0:
		return nil, is.configError("negative Validity %v", is.Validity)
	}
	caKey, ok := is.CA.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		// ecdsa-with-SHA256 is the only signature this issuer writes (the FFS guides' DAKs are P-256).
		return nil, is.configError("DAK certificate key is %T, want ECDSA", is.CA.PublicKey)
	}
	if !SamePublicKey(is.Signer.Public(), caKey) {
		return nil, fmt.Errorf("issuer: DAK certificate %q: %w", is.CA.Subject, ErrDAKKeyMismatch)
	}
	return caKey, nil
}

// Issue checks the CSR (CheckCSR), then issues and signs. Nothing is signed
// for a CSR that fails a check. The returned certificate's signature has been
// verified with the DAK certificate's public key.
func (is *Issuer) Issue(csrPEM []byte) (*Issued, error) {
	caKey, err := is.check()
	if err != nil {
		return nil, err
	}
	notBefore, err := is.notBefore()
	if err != nil {
		return nil, err
	}
	csr, err := is.Profile.CheckCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	return is.issue(csr, caKey, notBefore)
}

// IssueChecked issues for a CSR that Profile.CheckCSR already accepted (the issuance pipeline
// checks each CSR once, before it reserves a signature).
func (is *Issuer) IssueChecked(csr *x509.CertificateRequest) (*Issued, error) {
	caKey, err := is.check()
	if err != nil {
		return nil, err
	}
	notBefore, err := is.notBefore()
	if err != nil {
		return nil, err
	}
	return is.issue(csr, caKey, notBefore)
}

func (is *Issuer) issue(csr *x509.CertificateRequest, caKey *ecdsa.PublicKey, notBefore time.Time) (*Issued, error) {
	if SamePublicKey(csr.PublicKey, caKey) {
		// openssl would treat this as self-signing; a device must never hold the DAK.
		return nil, fmt.Errorf("issuing for %q: %w", csr.Subject, ErrCSRKeyIsDAK)
	}
	r := is.Rand
	if r == nil {
		r = rand.Reader
	}
	validity := is.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	serial, err := randomSerial(r)
	if err != nil {
		return nil, fmt.Errorf("issuing for %q: %w", csr.Subject, err)
	}
	notAfter := notBefore.Add(validity).Truncate(time.Second)

	tbs, err := is.buildTBS(csr, serial, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("issuing for %q: %w", csr.Subject, err)
	}
	// Parse the certificate with a placeholder signature first: a profile
	// whose output crypto/x509 cannot read must fail before the DAK signs
	// (every signature counts against the DAK's budget).
	if _, err := x509.ParseCertificate(assembleCertificate(tbs, placeholderSignature)); err != nil {
		return nil, fmt.Errorf("issuing for %q: the certificate would not parse: %w", csr.Subject, err)
	}
	digest := sha256.Sum256(tbs)
	sig, err := is.Signer.Sign(r, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %q with the DAK: %w", csr.Subject, err)
	}
	// Never hand out a certificate that does not verify (a hardware signer
	// with the wrong slot, a faulty signer).
	if !SignsInProcess(is.Signer) && !ecdsa.VerifyASN1(caKey, digest[:], sig) {
		return nil, fmt.Errorf("issuing for %q: %w", csr.Subject, ErrIssuedSignature)
	}
	cert, err := x509.ParseCertificate(assembleCertificate(tbs, sig))
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate issued for %q: %w", csr.Subject, err)
	}
	chain := make([]*x509.Certificate, 0, 2+len(is.Intermediates))
	chain = append(chain, cert, is.CA)
	chain = append(chain, is.Intermediates...)
	return &Issued{CSR: csr, Certificate: cert, Chain: chain, ChainPEM: EncodeChainPEM(chain)}, nil
}

// notBefore is now, to the second, inside the DAK certificate's validity.
func (is *Issuer) notBefore() (time.Time, error) {
	now := time.Now
	if is.Now != nil {
		now = is.Now
	}
	notBefore := now().UTC().Truncate(time.Second)
	if notBefore.Before(is.CA.NotBefore) || notBefore.After(is.CA.NotAfter) {
		// openssl would sign anyway; the chains would never verify.
		return time.Time{}, fmt.Errorf("issuer: DAK certificate %q is valid %s to %s, not at %s: %w", is.CA.Subject,
			is.CA.NotBefore.Format(time.RFC3339), is.CA.NotAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339), ErrDAKNotValid)
	}
	return notBefore, nil
}

// placeholderSignature is a well-formed ECDSA-Sig-Value (r = s = 1).
var placeholderSignature = []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}

// assembleCertificate wraps a TBSCertificate and signature (RFC 5280 4.1.1).
func assembleCertificate(tbs, sig []byte) []byte {
	return derSequence(tbs, derSequence(derOID(oidSignatureECDSA256)), derBitString(sig, 0))
}

// randomSerial draws a serial as OpenSSL's rand_serial does: 159 random bits,
// so the DER INTEGER is positive and at most 20 octets (RFC 5280 4.1.2.2).
func randomSerial(r io.Reader) (*big.Int, error) {
	var b [20]byte
	for range 8 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("reading random serial number: %w", err)
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
	return nil, errors.New("random source returned only zero serial numbers")
}

// buildTBS assembles the TBSCertificate (RFC 5280 4.1) as openssl x509 -req
// writes it.
func (is *Issuer) buildTBS(csr *x509.CertificateRequest, serial *big.Int, notBefore, notAfter time.Time) ([]byte, error) {
	exts, err := is.extensions(csr)
	if err != nil {
		return nil, err
	}
	var parts [][]byte
	// openssl makes a v3 certificate only when the section added extensions.
	if len(is.Profile.Extensions) > 0 {
		parts = append(parts, derContextExplicit(0, mustMarshal(2)))
	}
	parts = append(parts,
		derBigInt(serial),
		derSequence(derOID(oidSignatureECDSA256)), // parameters absent (RFC 5758 3.2)
		is.CA.RawSubject,
		derSequence(derTime(notBefore), derTime(notAfter)),
		csr.RawSubject,
		csr.RawSubjectPublicKeyInfo,
	)
	if len(exts) > 0 {
		parts = append(parts, derContextExplicit(3, derSequence(exts...)))
	}
	return derSequence(parts...), nil
}

// extensions returns the DER Extension entries in openssl's order: the
// profile section's, then (apps do_X509_sign / adapt_keyid_ext) a default
// subjectKeyIdentifier=hash and authorityKeyIdentifier=keyid,issuer when the
// section has none, while a section entry whose value is at most 2 octets
// ("none") removes the extension.
func (is *Issuer) extensions(csr *x509.CertificateRequest) ([][]byte, error) {
	if len(is.Profile.Extensions) == 0 {
		return nil, nil
	}
	var spki rawSPKI
	if _, err := asn1.Unmarshal(csr.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("reading CSR public key: %w", err)
	}
	serialContent, err := rawSerial(is.CA)
	if err != nil {
		return nil, err
	}
	ctx := &buildContext{subjectKeyBits: spki.PublicKey.Bytes, issuer: is.CA, issuerSerial: serialContent}

	type built struct {
		oid      asn1.ObjectIdentifier
		critical bool
		value    []byte
	}
	list := make([]built, 0, len(is.Profile.Extensions)+2)
	for i := range is.Profile.Extensions {
		e := &is.Profile.Extensions[i]
		v, err := e.build(ctx)
		if err != nil {
			return nil, err
		}
		list = append(list, built{e.OID, e.Critical, v})
	}
	for _, def := range []Extension{{Name: "subjectKeyIdentifier", OID: oidExtSubjectKeyID, kind: extSKIDHash}, defaultAKID} {
		idx := -1
		for i, b := range list {
			if b.oid.Equal(def.OID) {
				idx = i
				break
			}
		}
		if idx >= 0 {
			if len(list[idx].value) <= 2 {
				list = append(list[:idx], list[idx+1:]...)
			}
			continue
		}
		v, err := def.build(ctx)
		if err != nil {
			return nil, err
		}
		list = append(list, built{def.OID, false, v})
	}
	out := make([][]byte, 0, len(list))
	for _, b := range list {
		if b.critical {
			out = append(out, derSequence(derOID(b.oid), derBoolTrue, derOctetString(b.value)))
		} else {
			out = append(out, derSequence(derOID(b.oid), derOctetString(b.value)))
		}
	}
	return out, nil
}

// rawSerial returns the content octets of the certificate's serialNumber as
// encoded in the certificate (OpenSSL copies it, it does not re-encode it).
func rawSerial(cert *x509.Certificate) ([]byte, error) {
	var tbs asn1.RawValue
	if _, err := asn1.Unmarshal(cert.RawTBSCertificate, &tbs); err != nil {
		return nil, fmt.Errorf("reading DAK certificate serial: %w", err)
	}
	rest := tbs.Bytes
	for {
		var el asn1.RawValue
		var err error
		rest, err = asn1.Unmarshal(rest, &el)
		if err != nil {
			return nil, fmt.Errorf("reading DAK certificate serial: %w", err)
		}
		if el.Class == asn1.ClassContextSpecific && el.Tag == 0 {
			continue // version
		}
		if el.Class != asn1.ClassUniversal || el.Tag != asn1.TagInteger {
			return nil, errors.New("reading DAK certificate serial: not an INTEGER")
		}
		return el.Bytes, nil
	}
}

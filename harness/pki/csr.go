package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
)

// pemFailure classifies why pemSegment found no block.
type pemFailure int

const (
	pemOK pemFailure = iota
	pemNone
	pemGarbage
	pemTruncated
	pemBadBody
)

// pemSegment finds the first PEM block at the start of data (after blanks)
// and returns it with the rest. Unlike pem.Decode it does not skip text
// before the block, nor a broken block to find a later good one. On failure
// it says why, and a detail for people.
func pemSegment(data []byte) (*pem.Block, []byte, pemFailure, string) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil, pemNone, "no PEM block"
	}
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		if bytes.Contains(trimmed, []byte("-----BEGIN ")) {
			return nil, nil, pemGarbage, "unexpected text before the PEM block"
		}
		return nil, nil, pemNone, "no PEM block (no -----BEGIN line)"
	}
	lineEnd := bytes.IndexByte(trimmed, '\n')
	if lineEnd < 0 {
		return nil, nil, pemTruncated, "PEM block ends after its BEGIN line"
	}
	begin := bytes.TrimRight(trimmed[:lineEnd], " \t\r")
	label, ok := bytes.CutPrefix(begin, []byte("-----BEGIN "))
	if !ok || !bytes.HasSuffix(label, []byte("-----")) {
		return nil, nil, pemBadBody, fmt.Sprintf("malformed BEGIN line %q", begin)
	}
	label = label[:len(label)-5]
	endMarker := []byte("-----END " + string(label) + "-----")
	idx := bytes.Index(trimmed, endMarker)
	if next := bytes.Index(trimmed[lineEnd:], []byte("-----BEGIN ")); idx < 0 || (next >= 0 && lineEnd+next < idx) {
		// No END, or another block starts first: this one was cut short
		// (pem.Decode would silently skip it and return the next one).
		return nil, nil, pemTruncated, fmt.Sprintf("%s block has no END line (truncated?)", label)
	}
	segEnd := idx + len(endMarker)
	block, _ := pem.Decode(trimmed[:segEnd])
	if block == nil {
		return nil, nil, pemBadBody, fmt.Sprintf("%s block body is not valid base64", label)
	}
	return block, trimmed[segEnd:], pemOK, ""
}

func csrErr(reason error, format string, args ...any) *CSRError {
	return &CSRError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// DER views of a PKCS#10 request (RFC 2986 section 4), enough to classify
// what is wrong before handing it to crypto/x509.
type rawCSR struct {
	Info   asn1.RawValue
	SigAlg pkix.AlgorithmIdentifier
	Sig    asn1.BitString
}

type rawCSRInfo struct {
	Version int
	Subject asn1.RawValue
	SPKI    rawSPKI
	Attrs   asn1.RawValue `asn1:"optional,tag:0"`
}

type rawSPKI struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// decodeCSR turns PEM text into DER, classifying the failures.
func decodeCSR(csrPEM []byte) ([]byte, *CSRError) {
	block, rest, fail, detail := pemSegment(csrPEM)
	switch fail {
	case pemNone:
		return nil, csrErr(ErrCSRNotPEM, "CSR is not PEM: %s", detail)
	case pemGarbage:
		return nil, csrErr(ErrCSRNotPEM, "CSR is not PEM: %s", detail)
	case pemTruncated:
		return nil, csrErr(ErrCSRTruncated, "CSR PEM is truncated: %s", detail)
	case pemBadBody:
		return nil, csrErr(ErrCSRMalformed, "CSR PEM is malformed: %s", detail)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, csrErr(ErrCSRBlockType, "PEM block is %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(block.Headers) != 0 {
		return nil, csrErr(ErrCSRMalformed, "CSR PEM block has headers")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, csrErr(ErrCSRMalformed, "unexpected text after the CSR PEM block")
	}
	return block.Bytes, nil
}

func isTruncation(err error) bool {
	var se asn1.SyntaxError
	return errors.As(err, &se) && se.Msg == "data truncated"
}

// CheckCSR checks a PEM CSR against the profile: well-formed, EC P-256 key,
// ecdsa-with-SHA256, a valid self-signature, and a subject with exactly the
// profile's attributes. Any refusal is a *CSRError (errors.Is(err,
// ErrCSRRejected)); errors.Is with the specific sentinel says why.
func (p *Profile) CheckCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	der, cerr := decodeCSR(csrPEM)
	if cerr != nil {
		return nil, cerr
	}
	var outer rawCSR
	rest, err := asn1.Unmarshal(der, &outer)
	if err == nil && len(rest) != 0 {
		err = asn1.SyntaxError{Msg: "trailing data after the CertificationRequest"}
	}
	var info rawCSRInfo
	if err == nil {
		rest, err = asn1.Unmarshal(outer.Info.FullBytes, &info)
		if err == nil && len(rest) != 0 {
			err = asn1.SyntaxError{Msg: "trailing data after the CertificationRequestInfo"}
		}
	}
	if err != nil {
		if isTruncation(err) {
			return nil, &CSRError{Reason: ErrCSRTruncated, Detail: "CSR DER is truncated", Cause: err}
		}
		return nil, &CSRError{Reason: ErrCSRMalformed, Detail: "CSR DER is malformed", Cause: err}
	}

	if alg := info.SPKI.Algorithm.Algorithm; !alg.Equal(oidPublicKeyEC) {
		return nil, csrErr(ErrCSRKeyType, "CSR key is %s, profile requires EC P-256", describeOID(algorithmNames, alg))
	}
	var curve asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(info.SPKI.Algorithm.Parameters.FullBytes, &curve); err != nil || len(rest) != 0 {
		return nil, csrErr(ErrCSRCurve, "CSR key has explicit or missing curve parameters, profile requires the named curve P-256")
	}
	if !curve.Equal(oidCurveP256) {
		return nil, csrErr(ErrCSRCurve, "CSR key curve is %s, profile requires P-256 (prime256v1)", describeOID(curveNames, curve))
	}
	if alg := outer.SigAlg.Algorithm; !alg.Equal(oidSignatureECDSA256) {
		return nil, csrErr(ErrCSRSignatureAlgorithm, "CSR signature algorithm is %s, profile requires ecdsa-with-SHA256", describeOID(algorithmNames, alg))
	}
	if len(outer.SigAlg.Parameters.FullBytes) != 0 {
		// RFC 5758 section 3.2: the parameters MUST be absent.
		return nil, csrErr(ErrCSRSignatureAlgorithm, "CSR signature algorithm ecdsa-with-SHA256 carries parameters (RFC 5758 requires them absent)")
	}

	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, &CSRError{Reason: ErrCSRMalformed, Detail: "CSR does not parse", Cause: err}
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, csrErr(ErrCSRKeyType, "CSR key is %T, profile requires EC P-256", csr.PublicKey)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &CSRError{Reason: ErrCSRSignature, Detail: "CSR self-signature does not verify", Cause: err}
	}
	if err := p.checkSubject(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

type csrAttr struct {
	oid   asn1.ObjectIdentifier
	value string
	used  bool
}

func attrString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprintf("%v", v)
}

// checkSubject compares attributes, not RDN layout or string types: each
// profile field must match one CSR attribute of its type, in order among
// attributes of that type, and no CSR attribute may be left over.
func (p *Profile) checkSubject(csr *x509.CertificateRequest) error {
	attrs := make([]csrAttr, 0, len(csr.Subject.Names))
	for _, atv := range csr.Subject.Names {
		attrs = append(attrs, csrAttr{oid: atv.Type, value: attrString(atv.Value)})
	}
	for _, f := range p.Subject {
		var got *csrAttr
		for i := range attrs {
			if !attrs[i].used && attrs[i].oid.Equal(f.OID) {
				got = &attrs[i]
				break
			}
		}
		base := CSRError{Field: f.Name, OID: f.OID, Want: f.Value}
		if got == nil {
			base.Reason = ErrSubjectMissing
			if f.PerDevice {
				base.Detail = fmt.Sprintf("CSR subject: %s (%s) is missing, profile requires a per-device value", f.Name, f.OID)
			} else {
				base.Detail = fmt.Sprintf("CSR subject: %s (%s) is missing, profile requires %q", f.Name, f.OID, f.Value)
			}
			return &base
		}
		got.used = true
		base.Got = got.value
		switch {
		case f.PerDevice:
			if got.value == "" {
				base.Reason = ErrSubjectValue
				base.Detail = fmt.Sprintf("CSR subject: %s (%s) is empty, profile requires a per-device value", f.Name, f.OID)
				return &base
			}
		case got.value != f.Value:
			base.Reason = ErrSubjectValue
			if f.OID.Equal(p.DeviceTypeOID) {
				base.Reason = ErrDeviceType
			}
			base.Detail = fmt.Sprintf("CSR subject: %s (%s) is %q, profile requires %q", f.Name, f.OID, got.value, f.Value)
			return &base
		}
	}
	for _, a := range attrs {
		if !a.used {
			name := p.attributeName(a.oid)
			detail := fmt.Sprintf("CSR subject: %s (%s) = %q is not in the profile", name, a.oid, a.value)
			for _, f := range p.Subject {
				if f.OID.Equal(a.oid) {
					detail = fmt.Sprintf("CSR subject: %s (%s) = %q is one %s more than the profile lists", name, a.oid, a.value, name)
					break
				}
			}
			return &CSRError{Reason: ErrSubjectUnexpected, Field: name, OID: a.oid, Got: a.value, Detail: detail}
		}
	}
	return nil
}

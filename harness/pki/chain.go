package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// ParseChainPEM parses concatenated CERTIFICATE PEM blocks (leaf first).
// Anything else (text between or after blocks, other block types, a
// truncated block) is an error naming the block, so that a chain read back
// from a device is either exactly certificates or refused.
func ParseChainPEM(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	rest := data
	for i := 0; ; i++ {
		if len(bytes.TrimSpace(rest)) == 0 {
			break
		}
		block, r, fail, detail := pemSegment(rest)
		switch fail {
		case pemOK:
		case pemNone, pemGarbage:
			if i == 0 {
				return nil, &ChainError{Index: i, Reason: ErrChainPEM, Detail: "not PEM: " + detail}
			}
			return nil, &ChainError{Index: i, Reason: ErrChainPEM, Detail: fmt.Sprintf("unexpected text after certificate %d", i)}
		default:
			return nil, &ChainError{Index: i, Reason: ErrChainPEM, Detail: detail}
		}
		if block.Type != "CERTIFICATE" {
			return nil, &ChainError{Index: i, Reason: ErrChainBlockType, Detail: fmt.Sprintf("PEM block is %q, want CERTIFICATE", block.Type)}
		}
		if len(block.Headers) != 0 {
			return nil, &ChainError{Index: i, Reason: ErrChainPEM, Detail: "PEM block has headers"}
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &ChainError{Index: i, Reason: ErrChainParse, Cause: err}
		}
		chain = append(chain, cert)
		rest = r
	}
	if len(chain) == 0 {
		return nil, &ChainError{Index: -1, Reason: ErrChainEmpty}
	}
	return chain, nil
}

// EncodeChainPEM writes each certificate as a CERTIFICATE PEM block, in order.
func EncodeChainPEM(chain []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		// pem.Encode to a bytes.Buffer cannot fail for a block without headers.
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// VerifyChain checks leaf -> ... -> a root (roots may be nil: then the last
// certificate of the chain (the DAK) is the anchor). It checks the chain in
// the order given (each certificate issued and signed by the next), every
// certificate's validity at now, and then RFC 5280 path rules with
// crypto/x509 (CA constraints, path length; any extended key usage).
func VerifyChain(chain []*x509.Certificate, roots []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return &ChainError{Index: -1, Reason: ErrChainEmpty}
	}
	for i, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return &ChainError{Index: i, Reason: ErrChainValidity, Detail: fmt.Sprintf("%q is not valid at %s (valid %s to %s)",
				c.Subject, now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))}
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		c, parent := chain[i], chain[i+1]
		if !bytes.Equal(c.RawIssuer, parent.RawSubject) {
			return &ChainError{Index: i, Reason: ErrChainOrder, Detail: fmt.Sprintf("issuer %q is not the subject %q of the next certificate", c.Issuer, parent.Subject)}
		}
		if err := parent.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			return &ChainError{Index: i, Reason: ErrChainOrder, Detail: fmt.Sprintf("signature does not verify with the key of %q", parent.Subject), Cause: err}
		}
	}

	last := chain[len(chain)-1]
	rootPool := x509.NewCertPool()
	inter := x509.NewCertPool()
	if len(roots) == 0 {
		if len(chain) < 2 {
			return &ChainError{Index: -1, Reason: ErrChainUntrusted, Detail: "a chain of only a leaf needs roots"}
		}
		rootPool.AddCert(last)
		for _, c := range chain[1 : len(chain)-1] {
			inter.AddCert(c)
		}
	} else {
		anchored := false
		for _, r := range roots {
			rootPool.AddCert(r)
			if bytes.Equal(r.Raw, last.Raw) ||
				(bytes.Equal(last.RawIssuer, r.RawSubject) && r.CheckSignature(last.SignatureAlgorithm, last.RawTBSCertificate, last.Signature) == nil) {
				anchored = true
			}
		}
		if !anchored {
			return &ChainError{Index: len(chain) - 1, Reason: ErrChainUntrusted, Detail: fmt.Sprintf("%q is not issued by any of the %d roots", last.Subject, len(roots))}
		}
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		// Order, signatures, dates and the anchor were checked above, so what
		// crypto/x509 still refuses is a constraint (CA:FALSE issuer, path
		// length, key usage); it reports some of those as "unknown authority".
		var ci x509.CertificateInvalidError
		if errors.As(err, &ci) && ci.Reason == x509.Expired {
			return &ChainError{Index: -1, Reason: ErrChainValidity, Cause: err}
		}
		return &ChainError{Index: -1, Reason: ErrChainConstraints, Cause: err}
	}
	return nil
}

package signer

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"
)

// CheckChain checks that s can be used as a DAK at time now:
//
//   - there is a chain, and its first certificate certifies s.Public()
//     (ErrKeyMismatch);
//   - the DAK certificate is a CA allowed to sign certificates (ErrNotCA),
//     otherwise the device chains it signs fail verification;
//   - every certificate in the chain is within its validity period
//     (*ValidityError, matching ErrExpired or ErrNotYetValid);
//   - every certificate is signed by the next one (*ChainError, matching
//     ErrBrokenChain).
//
// It does not verify up to a root: the chain deliberately excludes the root,
// and which roots to trust is the caller's decision.
func CheckChain(s Signer, now time.Time) error {
	chain := s.Chain()
	if len(chain) == 0 || chain[0] == nil {
		return ErrEmptyChain
	}
	dak := chain[0]
	if !samePublicKey(dak.PublicKey, s.Public()) {
		return fmt.Errorf("%w: the certificate (%s) certifies a different public key", ErrKeyMismatch, dak.Subject)
	}
	if !dak.BasicConstraintsValid || !dak.IsCA {
		return fmt.Errorf("%w: %s has no basicConstraints CA:TRUE", ErrNotCA, dak.Subject)
	}
	// KeyUsage 0 means the extension is absent, which RFC 5280 allows.
	if dak.KeyUsage != 0 && dak.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: %s keyUsage lacks keyCertSign", ErrNotCA, dak.Subject)
	}
	for i, c := range chain {
		if c == nil {
			return fmt.Errorf("%w: certificate %d is missing", ErrBrokenChain, i)
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return &ValidityError{Index: i, Subject: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter, Now: now}
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		child, parent := chain[i], chain[i+1]
		// CheckSignatureFrom also insists the parent is a CA; the name
		// comparison catches a chain given in the wrong order early.
		err := child.CheckSignatureFrom(parent)
		if err == nil && string(child.RawIssuer) != string(parent.RawSubject) {
			err = fmt.Errorf("issuer %q does not name the next certificate", child.Issuer)
		}
		if err != nil {
			return &ChainError{Index: i, Subject: child.Subject.String(), Issuer: parent.Subject.String(), Err: err}
		}
	}
	return nil
}

// samePublicKey compares keys with the Equal method every crypto/* public
// key type has.
func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && eq.Equal(b)
}

package signer

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Signer is the DAK: a crypto.Signer plus its certificate chain and a human
// description.
type Signer interface {
	crypto.Signer
	// Chain returns the DAK certificate first, then intermediates up to (not
	// including) the root.
	Chain() []*x509.Certificate
	// Description says which DAK this is, e.g.
	// `softdak dak_private_key.pem (CN=Example DAK, expires 2036-11-21)`.
	// It never contains key material and is safe to log.
	Description() string
}

// Sentinel errors for errors.Is. The typed errors below match them.
var (
	// ErrKeyMismatch: the DAK certificate does not certify the signer's key.
	ErrKeyMismatch = errors.New("DAK certificate does not match the DAK key")
	// ErrExpired: a certificate in the chain is past its notAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: a certificate in the chain is before its notBefore.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrEmptyChain: the signer has no DAK certificate at all.
	ErrEmptyChain = errors.New("DAK has no certificate chain")
	// ErrBrokenChain: a certificate is not signed by the next one in the chain.
	ErrBrokenChain = errors.New("DAK certificate chain is broken")
	// ErrNotCA: the DAK certificate cannot sign certificates, so device
	// chains it produced would never verify (RFC 5280 4.2.1.9, 4.2.1.3).
	ErrNotCA = errors.New("DAK certificate is not a CA certificate")
)

// ValidityError reports a certificate used outside its validity period. It
// matches ErrExpired or ErrNotYetValid.
type ValidityError struct {
	Index     int    // position in the chain; 0 is the DAK certificate
	Subject   string // the certificate's subject, for the message
	NotBefore time.Time
	NotAfter  time.Time
	Now       time.Time
}

func (e *ValidityError) Error() string {
	what := "DAK certificate"
	if e.Index > 0 {
		what = fmt.Sprintf("chain certificate %d", e.Index)
	}
	const day = "2006-01-02 15:04:05 MST"
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("%s (%s) is not yet valid: valid from %s, now is %s",
			what, e.Subject, e.NotBefore.UTC().Format(day), e.Now.UTC().Format(day))
	}
	return fmt.Sprintf("%s (%s) expired on %s (now is %s)",
		what, e.Subject, e.NotAfter.UTC().Format(day), e.Now.UTC().Format(day))
}

// Is makes errors.Is(err, ErrExpired) and errors.Is(err, ErrNotYetValid) work.
func (e *ValidityError) Is(target error) bool {
	if e.Now.Before(e.NotBefore) {
		return target == ErrNotYetValid
	}
	return target == ErrExpired
}

// ChainError reports a chain link that does not verify. It matches
// ErrBrokenChain and wraps the cause from crypto/x509.
type ChainError struct {
	Index   int // chain[Index] is not signed by chain[Index+1]
	Subject string
	Issuer  string // subject of chain[Index+1]
	Err     error
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("DAK certificate chain is broken: certificate %d (%s) is not signed by certificate %d (%s): %v",
		e.Index, e.Subject, e.Index+1, e.Issuer, e.Err)
}

func (e *ChainError) Is(target error) bool { return target == ErrBrokenChain }
func (e *ChainError) Unwrap() error        { return e.Err }

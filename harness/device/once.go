package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"hilbench/harness/pki"
)

// The exactly-once rules every family's Provision follows, in the order it meets them:
//
//  1. Read the chain the device holds. CheckHeld: a chain the ledger records for the device's key
//     is done (Already: verify it, mark it verified); any other chain is refused unless
//     Options.Reprovision, whose new identity then Replaces the held leaf.
//  2. Ask the device for the key it has, before making one. NeedFreshKey: a key the ledger knows
//     (reserved, or with a chain) or does not know at all is kept, and the Issuer returns its
//     recorded chain or finishes its reservation; a key whose record was replaced, or (with
//     Reprovision) whose identity was verified, is replaced by a fresh one.
//  3. IssueChain: one Issue for the key, Reused when the ledger already held its chain.
//  4. MarkStored once the chain is on the device, MarkVerified once it was read back and
//     verified (VerifyStep). Ledger errors fail the device at StepRecord.

// Ledger states a Known reports (the ledger's record states).
const (
	StateReserved = "reserved"
	StateIssued   = "issued"
	StateStored   = "stored"
	StateVerified = "verified"
	StateReplaced = "replaced"
)

// Live says whether the ledger holds k as a device's current identity (or one on its way).
func (k *Known) Live() bool { return k != nil && k.State != StateReplaced }

// SameChain says whether two chains are the same certificates, byte for byte, in the same order.
func SameChain(a, b []*x509.Certificate) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if a[i] == nil || b[i] == nil || !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}

// WithCSR is a copy of is whose CSR is csr (the device's own, proof of the key it holds), so
// Verify checks the leaf against the key the device has, not against the ledger's word.
func WithCSR(is *pki.Issued, csr *x509.CertificateRequest) *pki.Issued {
	if is == nil || csr == nil {
		return is
	}
	c := *is
	c.CSR = csr
	return &c
}

// Lookup asks the ledger about a device key; its failure is target's failure at step.
func Lookup(ctx context.Context, iss Issuer, target, step string, pub crypto.PublicKey) (*Known, error) {
	k, err := iss.Lookup(ctx, pub)
	if err != nil {
		return nil, Fail(target, step, fmt.Errorf("ledger lookup of the device key: %w", err))
	}
	return k, nil
}

// CheckHeld decides what Provision does with the chain a device holds (held, leaf first). It
// returns the ledger's record when held is exactly the chain the ledger records for its key:
// the device is done. Otherwise it refuses with ErrAlreadyProvisioned at StepCheck, unless
// opts.Reprovision (nil, nil: go on and replace held[0]). Reprovision replaces the held identity
// even when the ledger records it: that is what the operator asked for.
func CheckHeld(ctx context.Context, iss Issuer, target string, held []*x509.Certificate, opts Options) (*Known, error) {
	if opts.Reprovision {
		return nil, nil
	}
	leaf := held[0]
	k, err := Lookup(ctx, iss, target, StepCheck, leaf.PublicKey)
	if err != nil {
		return nil, err
	}
	if k.Live() && k.Issued != nil && SameChain(k.Issued.Chain, held) {
		return k, nil
	}
	why := "the ledger does not know it"
	switch {
	case k.Live() && k.Issued != nil:
		why = fmt.Sprintf("the ledger records another chain for its key, leaf SHA-256 %s", pki.Fingerprint(k.Issued.Certificate))
	case k.Live():
		why = "the ledger holds only a reservation for its key"
	case k != nil:
		why = "the ledger records it as replaced"
	}
	return nil, Fail(target, StepCheck, fmt.Errorf("%w (leaf serial %s, SHA-256 %s; %s); pass --reprovision to replace it",
		ErrAlreadyProvisioned, leaf.SerialNumber.Text(16), pki.Fingerprint(leaf), why))
}

// NeedFreshKey says whether a key the device already has must be replaced before issuing, given
// what the ledger knows of it: a key the ledger does not know, or knows as reserved, issued or
// stored, is kept (an interrupted run made it); a replaced one is not, nor, with Reprovision, one
// whose identity was verified.
func NeedFreshKey(k *Known, opts Options) bool {
	switch {
	case k == nil:
		return false
	case !k.Live():
		return true
	}
	return opts.Reprovision && k.State == StateVerified
}

// IssueChain asks iss for the chain of req's CSR, whose key is csrKey; before is what the ledger
// knew of that key before (nil: nothing). It checks the answer holds the key and reports whether
// the chain came from the ledger without a new signature.
func IssueChain(ctx context.Context, iss Issuer, req IssueRequest, csrKey crypto.PublicKey, before *Known) (*pki.Issued, bool, error) {
	issued, err := iss.Issue(ctx, req)
	if err != nil {
		return nil, false, Fail(req.Target, StepIssue, err)
	}
	if issued == nil || issued.Certificate == nil || len(issued.Chain) == 0 || len(issued.ChainPEM) == 0 {
		return nil, false, Fail(req.Target, StepIssue, errors.New("issuer returned no chain"))
	}
	if !pki.SamePublicKey(issued.Certificate.PublicKey, csrKey) {
		return issued, false, Fail(req.Target, StepIssue, errors.New("issued leaf does not hold the key of the device's CSR"))
	}
	reused := before.Live() && before.Issued != nil && SameChain(before.Issued.Chain, issued.Chain)
	return issued, reused, nil
}

// MarkStored tells the ledger the chain is on the device.
func MarkStored(ctx context.Context, iss Issuer, target string, leaf *x509.Certificate) error {
	if err := iss.Stored(ctx, leaf); err != nil {
		return Fail(target, StepRecord, fmt.Errorf("ledger: recording that certificate %s is stored on the device: %w", pki.Fingerprint(leaf), err))
	}
	return nil
}

// MarkVerified tells the ledger the chain was read back from the device and verified.
func MarkVerified(ctx context.Context, iss Issuer, target string, leaf *x509.Certificate) error {
	if err := iss.Verified(ctx, leaf); err != nil {
		return Fail(target, StepRecord, fmt.Errorf("ledger: recording that certificate %s was verified on the device: %w", pki.Fingerprint(leaf), err))
	}
	return nil
}

// VerifyStep is Verify as target's step: a chain that is not the one wanted fails at
// StepReadBack, any other problem (path to the roots, key) at StepVerify.
func VerifyStep(target string, chain []*x509.Certificate, want *pki.Issued, roots []*x509.Certificate, now time.Time) error {
	err := Verify(chain, want, roots, now)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrChainMismatch), errors.Is(err, ErrNoChain):
		return Fail(target, StepReadBack, err)
	}
	return Fail(target, StepVerify, err)
}

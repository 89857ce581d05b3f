// Package device is the one model of a device under test that every family (ACS devices, ACK
// modules natively or through the vendor's tool) implements, so the CLI, the station and the
// specs loop over devices without asking what family they are.
//
// # Concepts
//
//   - Device: name, provision, read chain, reboot, factory reset, line statistics, close.
//   - Optional capabilities, found by type assertion: Flasher, PowerCycler, Identifier.
//   - Issuer: what turns a device's CSR into its chain, exactly once per device key. The station
//     (direct signing with the ledger) and the signing agent's client both implement it; a
//     driver never signs and never decides alone whether a chain is the station's.
//   - StepError: which device failed at which step; every family's errors are of this type.
//   - Verify: the one read-back check for every family: the chain read back equals the one
//     issued byte for byte, verifies to the roots, and its leaf holds the CSR's key.
package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"hilbench/harness/flash"
	"hilbench/harness/pki"
)

// Steps shared by every family, as reports name them. Families add their own (key_gen, commit...).
const (
	StepOpen     = "open"
	StepCheck    = "check-provisioned"
	StepIssue    = "issue"
	StepReadBack = "read_back"
	StepVerify   = "verify"
	StepReboot   = "reboot"
	StepReset    = "factory_reset"
	StepPower    = "power_cycle"
	StepRecord   = "record"
)

var (
	// ErrAlreadyProvisioned: the device holds a chain the ledger does not know as this device's
	// live identity, and the caller did not ask to replace it. A second key_gen would destroy an
	// identity that may be registered already.
	ErrAlreadyProvisioned = errors.New("device already holds a certificate chain")
	// ErrChainMismatch: the chain read back differs from the chain issued.
	ErrChainMismatch = errors.New("chain read back differs from the chain issued")
	// ErrNoChain: the device holds no chain.
	ErrNoChain = errors.New("device holds no certificate chain")
	// ErrUnsupported: the device cannot do what was asked (no power control, no flashing).
	ErrUnsupported = errors.New("not supported by this device")
)

// StepError says which device failed at which step.
type StepError struct {
	Target string
	Step   string
	Err    error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Target, e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Fail wraps err as target's failure at step; an error that already is a StepError is kept.
func Fail(target, step string, err error) error {
	if err == nil {
		return nil
	}
	var se *StepError
	if errors.As(err, &se) {
		return err
	}
	return &StepError{Target: target, Step: step, Err: err}
}

// StepOf is the step a StepError names ("" for other errors).
func StepOf(err error) string {
	var se *StepError
	if errors.As(err, &se) {
		return se.Step
	}
	return ""
}

// IssueRequest is one device's CSR on its way to a chain.
type IssueRequest struct {
	Target   string // the bench slot, for the ledger and the audit log
	DeviceID string // the device's own serial/DSN, when it reports one
	CSRPEM   []byte
	// Replaces is the leaf the device held before a reprovision: its record becomes replaced in
	// the same transaction as the new reservation. nil: nothing is replaced.
	Replaces *x509.Certificate
}

// Known is what the ledger holds for a device key.
type Known struct {
	State  string      // the ledger state: reserved, issued, stored, verified
	Issued *pki.Issued // the chain, once issued (nil while only reserved)
}

// Issuer turns a device's CSR into its chain, exactly once per device key: a key the ledger
// already issued for gets that chain again, with no new signature.
type Issuer interface {
	// Issue returns the chain for the CSR's key: the ledger's, or a new one (CSR checked once,
	// reservation and budget in one transaction, signed, signature checked, recorded).
	Issue(ctx context.Context, req IssueRequest) (*pki.Issued, error)
	// Lookup is what the ledger holds for a device public key; nil, nil when it knows nothing.
	Lookup(ctx context.Context, pub crypto.PublicKey) (*Known, error)
	// Stored and Verified advance the identity's record: the chain is on the device; the chain
	// was read back and verified.
	Stored(ctx context.Context, leaf *x509.Certificate) error
	Verified(ctx context.Context, leaf *x509.Certificate) error
	// Roots are the trust anchors chains must verify to.
	Roots() []*x509.Certificate
}

// Options change how Provision treats a device.
type Options struct {
	// Reprovision replaces an identity the device holds. Off by default: the existing chain
	// may belong to a device already registered in the field.
	Reprovision bool
	// Now is the verification time (default time.Now).
	Now func() time.Time
	// Progress, if set, is told each step as it starts.
	Progress func(target, step string)
}

// Time is the verification time.
func (o Options) Time() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Step tells Progress that target starts step.
func (o Options) Step(target, step string) {
	if o.Progress != nil {
		o.Progress(target, step)
	}
}

// Result is what Provision did. A failed Provision may still return one, holding the chain
// issued before the failure (for the report; the ledger has it anyway).
type Result struct {
	Issued *pki.Issued
	// Already: the device held the chain the ledger records for it; nothing was signed or written.
	Already bool
	// Reused: the chain came from the ledger (an interrupted run), no new signature.
	Reused bool
	// Facts are family-specific observations for the report ("provisioned_by": "vendor tool").
	Facts map[string]string
}

// Stats are the line statistics of a device, for the report (retransmissions, bytes each way).
type Stats map[string]int64

// Device is one device under test.
type Device interface {
	Name() string
	// Provision gives the device its identity through iss, exactly once (once.go: the rules).
	Provision(ctx context.Context, iss Issuer, opts Options) (*Result, error)
	// ReadChain reads the chain the device holds (ErrNoChain when it holds none).
	ReadChain(ctx context.Context) ([]*x509.Certificate, error)
	Reboot(ctx context.Context) error
	FactoryReset(ctx context.Context) error
	Stats() Stats
	Close() error
}

// Identifier is a device that reports its own identity (serial number, DSN).
type Identifier interface {
	DeviceID(ctx context.Context) (string, error)
}

// PowerCycler is a device whose power the bench can switch.
type PowerCycler interface {
	PowerCycle(ctx context.Context) error
}

// FlashOptions are per-run choices of a flash.
type FlashOptions struct {
	ExpectVersion string                        // when set, the booted firmware must report it
	Progress      func(target, step string)     // told each step as it starts
	Transfer      func(sent, total int64)       // transfer progress (a progress bar)
	Note          func(format string, a ...any) // retries and what caused them
}

// FlashResult is a verified flash.
type FlashResult struct {
	Version  string        // what the booted firmware reports
	Digest   string        // SHA-256 the device reported for what it received
	Attempts int           // transfers it took
	Duration time.Duration // the whole flash
	Facts    map[string]string
}

// Flasher is a device the bench can flash through its own link (console bootloader).
type Flasher interface {
	Flash(ctx context.Context, img *flash.Image, opts FlashOptions) (*FlashResult, error)
}

// Verify is the one read-back check of every family: chain (read back from the device) is
// want's chain byte for byte, verifies to roots at now, and its leaf holds the key of the CSR
// want was issued for. With want nil only the path to the roots is checked.
func Verify(chain []*x509.Certificate, want *pki.Issued, roots []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return ErrNoChain
	}
	if want != nil {
		if len(chain) != len(want.Chain) {
			return fmt.Errorf("%w: %d certificates read back, %d issued", ErrChainMismatch, len(chain), len(want.Chain))
		}
		for i := range chain {
			if !bytes.Equal(chain[i].Raw, want.Chain[i].Raw) {
				return fmt.Errorf("%w: certificate %d (%s) has SHA-256 %s, issued %s",
					ErrChainMismatch, i, chain[i].Subject, pki.Fingerprint(chain[i]), pki.Fingerprint(want.Chain[i]))
			}
		}
		key := want.Certificate.PublicKey
		if want.CSR != nil && want.CSR.PublicKey != nil {
			key = want.CSR.PublicKey
		}
		if !pki.SamePublicKey(chain[0].PublicKey, key) {
			return errors.New("leaf public key is not the key of the device's CSR")
		}
	}
	return pki.VerifyChain(chain, roots, now)
}

package yubikey

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"hilbench/harness/signer"
)

// Sentinel errors for errors.Is. The typed errors below match them.
var (
	// ErrCardNotFound: no card with the configured serial is in a reader
	// (*NotFoundError lists the serials seen).
	ErrCardNotFound = errors.New("YubiKey not found")
	// ErrLocked: the PIN is blocked (no retries left); only the PUK can
	// unblock it (*LockedError says how).
	ErrLocked = errors.New("YubiKey PIN is blocked")
	// ErrPUKBlocked: the PUK is blocked too; only a PIV reset, which erases
	// the DAK, makes the key usable again.
	ErrPUKBlocked = errors.New("YubiKey PUK is blocked")
	// ErrLowRetries: so few retries remain that trying the PIN (or PUK)
	// could lock the key; refused without trying (*LowRetriesError).
	ErrLowRetries = errors.New("too few retries left to try the PIN")
	// ErrWrongPIN: the card refused the PIN (or PUK); *WrongPINError
	// carries the retries left. Nothing tries it again automatically.
	ErrWrongPIN = errors.New("wrong YubiKey PIN")
	// ErrPINFile: the PIN file is not a PIN alone on one line of 6 to 8
	// printable characters. Detected before the key is touched.
	ErrPINFile = errors.New("unusable PIN file")
	// ErrInsecurePINFile: the PIN file is accessible to group or others.
	ErrInsecurePINFile = errors.New("PIN file is accessible to group or others")
	// ErrSlotEmpty: the slot holds no key.
	ErrSlotEmpty = errors.New("YubiKey slot holds no key")
	// ErrNoCertificate: the slot holds a key but no certificate.
	ErrNoCertificate = errors.New("YubiKey slot holds no certificate")
	// ErrKeyMismatch: the slot's certificate does not certify the slot's
	// key (the same sentinel as signer.ErrKeyMismatch).
	ErrKeyMismatch = signer.ErrKeyMismatch
	// ErrExpired: the DAK certificate (or an intermediate) is past its
	// notAfter (the same sentinel as signer.ErrExpired).
	ErrExpired = signer.ErrExpired
	// ErrAttestation: the slot's key could not be shown to have been
	// generated on the YubiKey (*AttestationError).
	ErrAttestation = errors.New("YubiKey attestation failed")
	// ErrCardGone: the card went away while in use and did not come back
	// in time (*ReplugError).
	ErrCardGone = errors.New("YubiKey went away")
	// ErrKeyChanged: after a replug the slot holds another key than the one
	// opened.
	ErrKeyChanged = errors.New("the key in the YubiKey slot changed")
	// ErrSlotOccupied: InitDAK would replace an existing key.
	ErrSlotOccupied = errors.New("YubiKey slot already holds a key")
	// ErrConfig: the configuration or options are incomplete or invalid.
	ErrConfig = errors.New("invalid YubiKey configuration")
	// ErrUnsupported: something this package does not handle (biometric
	// PIN policies, non-EC keys, firmware without metadata).
	ErrUnsupported = errors.New("unsupported YubiKey feature")
	// ErrBadSignature: the card returned a signature that does not verify
	// with the slot's public key.
	ErrBadSignature = errors.New("YubiKey returned a signature that does not verify")
	// ErrClosed: the YubiKey was closed.
	ErrClosed = errors.New("YubiKey closed")
)

// Credential names what a counter or error is about.
type Credential string

// Credentials.
const (
	PIN Credential = "PIN"
	PUK Credential = "PUK"
)

// NotFoundError reports that no card with Serial was found. It matches
// ErrCardNotFound.
type NotFoundError struct {
	Serial  uint32
	Filter  string     // reader filter used ("" = DefaultReader)
	Readers int        // number of PC/SC readers (all, before filtering)
	Seen    []SeenCard // cards found in readers passing the filter
}

func (e *NotFoundError) Error() string {
	filter := e.Filter
	if filter == "" {
		filter = DefaultReader
	}
	var b strings.Builder
	fmt.Fprintf(&b, "YubiKey with serial %d not found", e.Serial)
	if len(e.Seen) == 0 {
		fmt.Fprintf(&b, ": no card in any of the %d readers matching %q", e.Readers, filter)
		return b.String()
	}
	var serials []string
	var other []string
	for _, s := range e.Seen {
		if s.Err == nil {
			serials = append(serials, fmt.Sprint(s.Serial))
		}
		other = append(other, s.String())
	}
	if len(serials) > 0 {
		fmt.Fprintf(&b, "; serials seen: %s", strings.Join(serials, ", "))
	} else {
		b.WriteString("; no YubiKey serial could be read")
	}
	fmt.Fprintf(&b, " (readers matching %q: %s)", filter, strings.Join(other, "; "))
	return b.String()
}

func (e *NotFoundError) Is(target error) bool { return target == ErrCardNotFound }

// Serials returns the serial numbers of the YubiKeys seen.
func (e *NotFoundError) Serials() []uint32 {
	var out []uint32
	for _, s := range e.Seen {
		if s.Err == nil {
			out = append(out, s.Serial)
		}
	}
	return out
}

// UnblockCommand is the harness command that unblocks a PIN with the PUK.
const UnblockCommand = "hil yubikey unblock"

// LockedError reports a blocked PIN (or PUK). It matches ErrLocked (PIN) or
// ErrPUKBlocked (PUK).
type LockedError struct {
	Serial     uint32
	Credential Credential
}

func (e *LockedError) Error() string {
	if e.Credential == PUK {
		return fmt.Sprintf("YubiKey %d: the PUK is blocked (0 retries left): the PIN can no longer be unblocked; "+
			"only a PIV reset, which erases the DAK, makes the key usable again: replace the key "+
			"(for a YubiKey provided by Amazon, contact Amazon)", e.Serial)
	}
	return fmt.Sprintf("YubiKey %d: the PIN is blocked (0 retries left); nothing was tried. "+
		"Unblock it with the PUK: run `%s --serial %d` at a supervised station (the PUK is entered at its prompt and never kept on the line); "+
		"for a YubiKey provided by Amazon, contact Amazon to unlock or replace it", e.Serial, UnblockCommand, e.Serial)
}

func (e *LockedError) Is(target error) bool {
	if e.Credential == PUK {
		return target == ErrPUKBlocked
	}
	return target == ErrLocked
}

// LowRetriesError reports that the PIN (or PUK) was not tried because only
// Retries attempts remain and the operator did not allow using the last
// one. It matches ErrLowRetries.
type LowRetriesError struct {
	Serial     uint32
	Credential Credential
	Retries    int
}

func (e *LowRetriesError) Error() string {
	return fmt.Sprintf("YubiKey %d: only %d %s %s left; not trying the %s, because a wrong one would block the key. "+
		"Check the %s first; then allow the last retry explicitly (bench file allow_last_retry: true, or --allow-last-retry)",
		e.Serial, e.Retries, e.Credential, plural(e.Retries, "retry", "retries"), e.Credential, e.Credential)
}

func (e *LowRetriesError) Is(target error) bool { return target == ErrLowRetries }

// WrongPINError reports that the card refused the PIN (or PUK). It matches
// ErrWrongPIN, and also ErrLocked (or ErrPUKBlocked) when no retries remain.
type WrongPINError struct {
	Serial     uint32
	Credential Credential
	Retries    int // retries left after this attempt
}

func (e *WrongPINError) Error() string {
	msg := fmt.Sprintf("YubiKey %d: wrong %s (%d %s left); not trying again", e.Serial, e.Credential,
		e.Retries, plural(e.Retries, "retry", "retries"))
	switch {
	case e.Retries == 0:
		return msg + ": " + (&LockedError{Serial: e.Serial, Credential: e.Credential}).Error()
	case e.Credential == PIN:
		return msg + ": fix the PIN file before the next run"
	}
	return msg
}

func (e *WrongPINError) Is(target error) bool {
	if target == ErrWrongPIN {
		return true
	}
	if e.Retries == 0 {
		return (&LockedError{Credential: e.Credential}).Is(target)
	}
	return false
}

// PINFileError reports a PIN file that was refused before the key was
// touched. It matches ErrPINFile, or ErrInsecurePINFile for a file readable
// by others. It never contains the PIN.
type PINFileError struct {
	Path     string
	Problem  string
	Insecure bool
	Mode     fs.FileMode // set when Insecure
	Err      error       // underlying I/O error, if any
}

func (e *PINFileError) Error() string {
	if e.Insecure {
		return fmt.Sprintf("PIN file %s has mode %04o (%s): it must not be readable or writable by group or others; fix it with: chmod 600 %s",
			e.Path, uint32(e.Mode.Perm()), e.Mode.Perm(), e.Path)
	}
	if e.Err != nil {
		return fmt.Sprintf("PIN file %s: %s: %v", e.Path, e.Problem, e.Err)
	}
	return fmt.Sprintf("PIN file %s: %s", e.Path, e.Problem)
}

func (e *PINFileError) Is(target error) bool {
	if e.Insecure {
		return target == ErrInsecurePINFile
	}
	return target == ErrPINFile
}

func (e *PINFileError) Unwrap() error { return e.Err }

// AttestationError reports a failed attestation check. It matches
// ErrAttestation.
type AttestationError struct {
	Serial uint32
	Slot   string
	Reason string
	Err    error
}

func (e *AttestationError) Error() string {
	msg := fmt.Sprintf("YubiKey %d slot %s: attestation failed: %s", e.Serial, e.Slot, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *AttestationError) Is(target error) bool { return target == ErrAttestation }
func (e *AttestationError) Unwrap() error        { return e.Err }

// ReplugError reports a card that went away during signing and did not come
// back (or came back unusable). It matches ErrCardGone.
type ReplugError struct {
	Serial  uint32
	Timeout time.Duration
	Cause   error // why the signature failed
	Last    error // the last attempt to find the card again
}

func (e *ReplugError) Error() string {
	return fmt.Sprintf("YubiKey %d went away while signing (%v) and did not come back within %v (last look: %v); nothing was signed",
		e.Serial, e.Cause, e.Timeout, e.Last)
}

func (e *ReplugError) Is(target error) bool { return target == ErrCardGone }
func (e *ReplugError) Unwrap() []error      { return []error{e.Cause, e.Last} }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

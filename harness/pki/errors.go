package pki

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Sentinels for a product profile that cannot be used. They arrive wrapped in
// a *ProfileError that names the file, line, section and key.
var (
	ErrProfileSyntax         = errors.New("syntax error")
	ErrProfileMissingSection = errors.New("missing section")
	ErrProfileUnknownName    = errors.New("unknown name")
	ErrProfileUnsupported    = errors.New("not supported")
	ErrProfileInvalidValue   = errors.New("invalid value")
)

// ProfileError says where in a product profile something is wrong.
// errors.Is(err, ErrProfileUnknownName) etc. tells callers which kind.
type ProfileError struct {
	Path    string // file name as given to LoadProfile/ParseProfile
	Line    int    // 1-based; 0 when the problem has no single line (a missing section)
	Section string // config section, "" for the top level
	Key     string // key in the section, "" when the problem is the section itself
	Msg     string // what is wrong, for people
	Err     error  // one of the ErrProfile* sentinels
}

func (e *ProfileError) Error() string {
	var b strings.Builder
	b.WriteString("profile ")
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Section != "" {
		fmt.Fprintf(&b, "[%s] ", e.Section)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *ProfileError) Unwrap() error { return e.Err }

// Sentinels for a refused CSR. Each refusal is a *CSRError that unwraps to
// exactly one of these, and every *CSRError also matches ErrCSRRejected, so a
// caller can tell "this device's CSR is bad" from "the station is broken".
var (
	ErrCSRRejected = errors.New("CSR rejected")

	ErrCSRNotPEM             = errors.New("CSR is not PEM")
	ErrCSRBlockType          = errors.New("PEM block is not a CERTIFICATE REQUEST")
	ErrCSRTruncated          = errors.New("CSR PEM is truncated")
	ErrCSRMalformed          = errors.New("CSR is malformed")
	ErrCSRKeyType            = errors.New("CSR key is not an EC key")
	ErrCSRCurve              = errors.New("CSR key is not on curve P-256")
	ErrCSRSignatureAlgorithm = errors.New("CSR signature algorithm is not ecdsa-with-SHA256")
	ErrCSRSignature          = errors.New("CSR self-signature does not verify")
	ErrSubjectMissing        = errors.New("CSR subject lacks a field the profile requires")
	ErrDeviceType            = errors.New("CSR device type id differs from the profile")
	ErrSubjectValue          = errors.New("CSR subject field has the wrong value")
	ErrSubjectUnexpected     = errors.New("CSR subject has a field the profile does not list")
)

// CSRError is a refused CSR. Reason is one of the ErrCSR*/ErrSubject*/
// ErrDeviceType sentinels; the other fields are filled when they apply.
type CSRError struct {
	Reason error
	Field  string                // attribute name as the profile spells it ("DeviceTypeId", "CN")
	OID    asn1.ObjectIdentifier // attribute type
	Got    string                // value found in the CSR
	Want   string                // value the profile requires
	Detail string                // human-readable explanation
	Cause  error                 // underlying parse/verify error, if any
}

func (e *CSRError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Reason.Error()
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap exposes the reason sentinel and the cause.
func (e *CSRError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Reason, e.Cause}
	}
	return []error{e.Reason}
}

// Is makes every CSRError match ErrCSRRejected.
func (e *CSRError) Is(target error) bool { return target == ErrCSRRejected }

// Sentinels for issuance problems that are not the CSR's fault.
var (
	ErrIssuerConfig     = errors.New("issuer is not configured correctly")
	ErrDAKKeyMismatch   = errors.New("DAK signer key does not match the DAK certificate")
	ErrDAKNotValid      = errors.New("DAK certificate is not valid now")
	ErrIssuerKeyID      = errors.New("profile requires an authority key id but the DAK certificate has no subject key identifier")
	ErrCSRKeyIsDAK      = errors.New("CSR public key is the DAK's own key")
	ErrIssuedSignature  = errors.New("issued certificate signature does not verify with the DAK public key")
	ErrUnsupportedKey   = errors.New("unsupported public key")
	ErrChainEmpty       = errors.New("certificate chain is empty")
	ErrChainPEM         = errors.New("chain is not a sequence of PEM blocks")
	ErrChainBlockType   = errors.New("PEM block is not a CERTIFICATE")
	ErrChainParse       = errors.New("certificate does not parse")
	ErrChainOrder       = errors.New("certificate is not issued by the next certificate in the chain")
	ErrChainValidity    = errors.New("certificate is not valid at the given time")
	ErrChainUntrusted   = errors.New("chain does not end at a trusted root")
	ErrChainConstraints = errors.New("chain violates certificate constraints")
)

// ChainError names the certificate (0 = leaf) of a chain that is at fault.
type ChainError struct {
	Index  int   // position in the chain, 0-based; -1 when no single certificate is at fault
	Reason error // one of the ErrChain* sentinels
	Detail string
	Cause  error
}

func (e *ChainError) Error() string {
	var b strings.Builder
	if e.Index >= 0 {
		fmt.Fprintf(&b, "chain certificate %d", e.Index+1)
		if e.Index == 0 {
			b.WriteString(" (leaf)")
		}
		b.WriteString(": ")
	}
	if e.Detail != "" {
		b.WriteString(e.Detail)
	} else {
		b.WriteString(e.Reason.Error())
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

func (e *ChainError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Reason, e.Cause}
	}
	return []error{e.Reason}
}

package agent

import (
	"errors"
	"fmt"
	"time"

	"hilbench/harness/issue"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer/budget"
)

// MaxRequestLine is the longest request line the agent reads (without its
// newline). A CSR is under 1 KiB; anything near this is not a request.
const MaxRequestLine = 64 << 10

// maxResponseLine bounds what the client reads back (a chain is ~3 KiB).
const maxResponseLine = 1 << 20

// maxTarget bounds the target name and the device id a client gives.
const maxTarget = 256

// Operations.
const (
	OpIssue    = "issue"    // a device's CSR -> its chain (the ledger's, or a new one)
	OpLookup   = "lookup"   // a device public key -> what the ledger holds for it
	OpStored   = "stored"   // the device holds the chain of this leaf
	OpVerified = "verified" // the chain of this leaf was read back from the device and verified
	OpStatus   = "status"
)

// opsText lists the operations for error messages.
const opsText = `"issue", "lookup", "stored", "verified" or "status"`

// Error codes on the wire. The client turns each into an *Error that
// matches the sentinel named.
const (
	CodeCSRRejected     = "csr_rejected"     // pki.ErrCSRRejected: the CSR fails the product profile
	CodeBudgetExhausted = "budget_exhausted" // ledger.ErrBudgetExhausted (and budget.ErrExhausted)
	CodeSignerFailed    = "signer_failed"    // ErrSignerFailed: the DAK could not sign
	CodeAuditFailed     = "audit_failed"     // ErrAuditFailed: the audit log cannot be written
	CodeLedgerFailed    = "ledger_failed"    // ErrLedgerFailed: the ledger cannot be read or written
	CodeNotFound        = "not_found"        // ledger.ErrNotFound: the ledger has no live record of the certificate
	CodeBadRequest      = "bad_request"      // ErrBadRequest
	CodeBusy            = "busy"             // ErrBusy: queue full, retry later
	CodeShuttingDown    = "shutting_down"    // ErrShuttingDown
	CodeForbidden       = "forbidden"        // ErrForbidden: the peer is another user
)

// Sentinels for errors.Is. Errors from the agent are *Error values that match
// one of these (or pki.ErrCSRRejected, ledger.ErrBudgetExhausted, ...).
var (
	ErrSignerFailed = errors.New("the DAK could not sign")
	ErrAuditFailed  = errors.New("the signing agent cannot write its audit log")
	ErrLedgerFailed = errors.New("the signing agent cannot use its ledger")
	ErrBadRequest   = errors.New("bad request to the signing agent")
	ErrBusy         = errors.New("the signing agent is busy")
	ErrShuttingDown = errors.New("the signing agent is shutting down")
	ErrForbidden    = errors.New("the signing agent refused this user")

	// ErrNoAgent: nothing serves the socket (missing or stale).
	ErrNoAgent = errors.New("no signing agent is running")
	// ErrNotSocket: the path exists but is not a Unix socket.
	ErrNotSocket = errors.New("not a Unix socket")
	// ErrSocketOwner: the socket belongs to another user (*OwnerError).
	ErrSocketOwner = errors.New("signing agent socket is owned by another user")
	// ErrUnsafeDir: the socket's directory is not private to this user.
	ErrUnsafeDir = errors.New("socket directory is not private")
	// ErrAgentRunning: another agent already serves the socket path.
	ErrAgentRunning = errors.New("a signing agent is already running")
	// ErrConnectionLost: the connection broke before the answer came, twice.
	ErrConnectionLost = errors.New("connection to the signing agent lost")
	// ErrBadResponse: the agent answered something this client cannot use.
	ErrBadResponse = errors.New("bad response from the signing agent")
)

// request is one line from a client.
type request struct {
	Op     string `json:"op"`
	ID     string `json:"id,omitempty"`
	Target string `json:"target,omitempty"`

	// issue
	CSR      string `json:"csr,omitempty"`
	DeviceID string `json:"device_id,omitempty"` // the device's serial/DSN, when it reports one
	Replaces string `json:"replaces,omitempty"`  // PEM of the leaf the device held before (a reprovision)

	// lookup: the device public key, base64 (standard, padded) of its SubjectPublicKeyInfo DER
	Key string `json:"key,omitempty"`
	// stored, verified: PEM of the leaf certificate (the rest of a chain after it is ignored)
	Certificate string `json:"certificate,omitempty"`
}

// response is one line to a client.
type response struct {
	ID    string     `json:"id"`
	OK    bool       `json:"ok"`
	Error *wireError `json:"error,omitempty"`

	// issue
	Chain     string      `json:"chain,omitempty"`
	Serial    string      `json:"serial,omitempty"`
	SHA256    string      `json:"sha256,omitempty"`
	CSRSHA256 string      `json:"csr_sha256,omitempty"`
	Reused    bool        `json:"reused,omitempty"`
	Budget    *BudgetInfo `json:"budget,omitempty"`
	Warning   string      `json:"warning,omitempty"`

	// lookup: the ledger state of the key's live record (reserved, issued, stored, verified);
	// absent when the ledger knows nothing of the key. Chain, serial and sha256 come with it
	// once the record is past reserved.
	State string `json:"state,omitempty"`

	// status
	Status *Status `json:"status,omitempty"`
}

type wireError struct {
	Code    string `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// BudgetInfo is the DAK's signature budget as the agent sees it.
type BudgetInfo struct {
	Used      int64 `json:"used"`
	Max       int64 `json:"max"`       // <= 0: unlimited
	Remaining int64 `json:"remaining"` // -1: unlimited
}

// Status is the agent's answer to a status request.
type Status struct {
	DAK           string      `json:"dak"` // the signer's Description
	DAKSubject    string      `json:"dak_subject"`
	DAKSHA256     string      `json:"dak_sha256"`
	Budget        *BudgetInfo `json:"budget,omitempty"` // from the ledger; nil when it cannot be read (LedgerError says why)
	Queue         int         `json:"queue"`            // requests waiting for the DAK
	Signing       bool        `json:"signing"`          // a request is with the DAK now
	Issued        int64       `json:"issued"`           // new certificates since start
	Reused        int64       `json:"reused"`           // requests answered with the ledger's chain
	Rejected      int64       `json:"rejected"`         // CSRs refused
	Clients       int         `json:"clients"`          // open connections
	PID           int         `json:"pid"`
	Started       time.Time   `json:"started"`
	UptimeSeconds float64     `json:"uptime_seconds"`
	Ledger        string      `json:"ledger"` // the ledger store (file, or host/database)
	LedgerError   string      `json:"ledger_error,omitempty"`
	AuditLog      string      `json:"audit_log,omitempty"`
}

// Uptime is how long the agent has run.
func (s *Status) Uptime() time.Duration {
	return time.Duration(s.UptimeSeconds * float64(time.Second))
}

// Error is an error the agent answered with.
type Error struct {
	Code    string // one of the Code* constants
	Reason  string // csr_rejected: which check failed (see csrReasons); ledger_failed: see ledgerReasons
	Message string
	ID      string // the request id
}

func (e *Error) Error() string {
	return fmt.Sprintf("signing agent: %s: %s", e.Code, e.Message)
}

// Is maps the code (and for csr_rejected and ledger_failed the reason) to
// sentinels. The pipeline's sentinels match too (issue.ErrAudit,
// issue.ErrLedger), so a caller of a device.Issuer need not know whether it
// signs directly or through the agent.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeCSRRejected:
		return target == pki.ErrCSRRejected || reasonIs(csrReasons, e.Reason, target)
	case CodeBudgetExhausted:
		return target == ledger.ErrBudgetExhausted || target == budget.ErrExhausted
	case CodeSignerFailed:
		return target == ErrSignerFailed
	case CodeAuditFailed:
		return target == ErrAuditFailed || target == issue.ErrAudit
	case CodeLedgerFailed:
		return target == ErrLedgerFailed || target == issue.ErrLedger || reasonIs(ledgerReasons, e.Reason, target)
	case CodeNotFound:
		return target == ledger.ErrNotFound
	case CodeBadRequest:
		return target == ErrBadRequest
	case CodeBusy:
		return target == ErrBusy
	case CodeShuttingDown:
		return target == ErrShuttingDown
	case CodeForbidden:
		return target == ErrForbidden
	}
	return false
}

// reason names one sentinel on the wire.
type reason struct {
	name string
	err  error
}

func reasonIs(reasons []reason, name string, target error) bool {
	for _, r := range reasons {
		if r.name == name && target == r.err {
			return true
		}
	}
	return false
}

// reasonOf is the name of the first sentinel err matches ("" if none).
func reasonOf(reasons []reason, err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return ""
}

// ledgerReasons names the ledger's failures on the wire.
var ledgerReasons = []reason{
	{"unavailable", ledger.ErrUnavailable},
	{"corrupt", ledger.ErrCorrupt},
	{"live_record", ledger.ErrLiveRecord},
	{"state", ledger.ErrState},
	{"schema_too_new", ledger.ErrSchemaTooNew},
}

// csrReasons names each CSR refusal on the wire.
var csrReasons = []reason{
	{"not_pem", pki.ErrCSRNotPEM},
	{"block_type", pki.ErrCSRBlockType},
	{"truncated", pki.ErrCSRTruncated},
	{"malformed", pki.ErrCSRMalformed},
	{"key_type", pki.ErrCSRKeyType},
	{"curve", pki.ErrCSRCurve},
	{"signature_algorithm", pki.ErrCSRSignatureAlgorithm},
	{"signature", pki.ErrCSRSignature},
	{"subject_missing", pki.ErrSubjectMissing},
	{"device_type", pki.ErrDeviceType},
	{"subject_value", pki.ErrSubjectValue},
	{"subject_unexpected", pki.ErrSubjectUnexpected},
	{"key_is_dak", pki.ErrCSRKeyIsDAK},
}

// errorFor turns a pipeline error into its wire form. An error the
// pipeline does not mark as the ledger's or the audit log's comes from the
// signature step: signer_failed.
func errorFor(err error) *wireError {
	msg := err.Error()
	switch {
	case errors.Is(err, pki.ErrCSRRejected) || errors.Is(err, pki.ErrCSRKeyIsDAK):
		return &wireError{Code: CodeCSRRejected, Reason: reasonOf(csrReasons, err), Message: msg}
	case errors.Is(err, ledger.ErrBudgetExhausted) || errors.Is(err, budget.ErrExhausted):
		return &wireError{Code: CodeBudgetExhausted, Message: msg}
	case errors.Is(err, issue.ErrAudit):
		return &wireError{Code: CodeAuditFailed, Message: msg}
	case errors.Is(err, issue.ErrLedger) || reasonOf(ledgerReasons, err) != "":
		return &wireError{Code: CodeLedgerFailed, Reason: reasonOf(ledgerReasons, err), Message: msg}
	case errors.Is(err, ledger.ErrNotFound):
		return &wireError{Code: CodeNotFound, Message: msg}
	default:
		return &wireError{Code: CodeSignerFailed, Message: msg}
	}
}

// ledgerErrorFor is errorFor for the operations that only use the ledger
// (lookup, stored, verified): whatever is not a known kind is the ledger's.
func ledgerErrorFor(err error) *wireError {
	we := errorFor(err)
	if we.Code == CodeSignerFailed {
		we.Code = CodeLedgerFailed
	}
	return we
}

// OwnerError: the socket belongs to another user. It matches ErrSocketOwner.
type OwnerError struct {
	Path string
	UID  int // the socket's owner
	Want int // this process's effective uid
}

func (e *OwnerError) Error() string {
	return fmt.Sprintf("signing agent socket %s is owned by uid %d, not by you (uid %d): refusing to use an agent another user runs; "+
		"run `hil signer serve` as uid %d or point the bench's signer.socket elsewhere", e.Path, e.UID, e.Want, e.Want)
}

func (e *OwnerError) Is(target error) bool { return target == ErrSocketOwner }

// NoAgentError: nothing serves the socket. It matches ErrNoAgent.
type NoAgentError struct {
	Path   string
	Stale  bool // the socket file exists but nobody answers
	Detail string
}

func (e *NoAgentError) Error() string {
	what := "no signing agent socket at " + e.Path
	if e.Stale {
		what = "the signing agent socket " + e.Path + " is stale (nobody answers)"
	}
	if e.Detail != "" {
		what += " (" + e.Detail + ")"
	}
	return what + ": start the agent with `hil signer serve --bench FILE` (the bench that owns the DAK) and try again"
}

func (e *NoAgentError) Is(target error) bool { return target == ErrNoAgent }

// RunningError: another agent already serves the path. It matches
// ErrAgentRunning.
type RunningError struct {
	Path string
	PID  int // 0 if unknown
}

func (e *RunningError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("a signing agent (pid %d) is already serving %s: use it, or stop it first", e.PID, e.Path)
	}
	return fmt.Sprintf("a signing agent is already serving %s: use it, or stop it first", e.Path)
}

func (e *RunningError) Is(target error) bool { return target == ErrAgentRunning }

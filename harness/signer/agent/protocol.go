package agent

import (
	"errors"
	"fmt"
	"time"

	"hilbench/harness/pki"
	"hilbench/harness/signer/budget"
)

// MaxRequestLine is the longest request line the agent reads (without its
// newline). A CSR is under 1 KiB; anything near this is not a request.
const MaxRequestLine = 64 << 10

// maxResponseLine bounds what the client reads back (a chain is ~3 KiB).
const maxResponseLine = 1 << 20

// maxTarget bounds the target name a client gives.
const maxTarget = 256

// Operations.
const (
	OpIssue  = "issue"
	OpStatus = "status"
)

// Error codes on the wire. The client turns each into an *Error that
// matches the sentinel named.
const (
	CodeCSRRejected     = "csr_rejected"     // pki.ErrCSRRejected: the CSR fails the product profile
	CodeBudgetExhausted = "budget_exhausted" // budget.ErrExhausted
	CodeSignerFailed    = "signer_failed"    // ErrSignerFailed: the DAK could not sign
	CodeAuditFailed     = "audit_failed"     // ErrAuditFailed: the audit log cannot be written
	CodeBadRequest      = "bad_request"      // ErrBadRequest
	CodeBusy            = "busy"             // ErrBusy: queue full, retry later
	CodeShuttingDown    = "shutting_down"    // ErrShuttingDown
	CodeForbidden       = "forbidden"        // ErrForbidden: the peer is another user
)

// Sentinels for errors.Is. Errors from the agent are *Error values that match
// one of these (or pki.ErrCSRRejected, budget.ErrExhausted).
var (
	ErrSignerFailed = errors.New("the DAK could not sign")
	ErrAuditFailed  = errors.New("the signing agent cannot write its audit log")
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
	CSR    string `json:"csr,omitempty"`
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
	Budget        *BudgetInfo `json:"budget,omitempty"` // nil: not counted
	Queue         int         `json:"queue"`            // requests waiting for the DAK
	Signing       bool        `json:"signing"`          // a request is with the DAK now
	Issued        int64       `json:"issued"`           // new certificates since start
	Reused        int64       `json:"reused"`           // retries answered from the record
	Rejected      int64       `json:"rejected"`         // CSRs refused
	Unaudited     int         `json:"unaudited"`        // issued but not yet in the audit log
	Clients       int         `json:"clients"`          // open connections
	PID           int         `json:"pid"`
	Started       time.Time   `json:"started"`
	UptimeSeconds float64     `json:"uptime_seconds"`
	AuditLog      string      `json:"audit_log,omitempty"`
}

// Uptime is how long the agent has run.
func (s *Status) Uptime() time.Duration {
	return time.Duration(s.UptimeSeconds * float64(time.Second))
}

// Error is an error the agent answered with.
type Error struct {
	Code    string // one of the Code* constants
	Reason  string // for csr_rejected: which check failed (see csrReasons)
	Message string
	ID      string // the request id
}

func (e *Error) Error() string {
	return fmt.Sprintf("signing agent: %s: %s", e.Code, e.Message)
}

// Is maps the code (and for csr_rejected the reason) to sentinels.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeCSRRejected:
		if target == pki.ErrCSRRejected {
			return true
		}
		for _, r := range csrReasons {
			if r.name == e.Reason && target == r.err {
				return true
			}
		}
		return false
	case CodeBudgetExhausted:
		return target == budget.ErrExhausted
	case CodeSignerFailed:
		return target == ErrSignerFailed
	case CodeAuditFailed:
		return target == ErrAuditFailed
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

// csrReasons names each CSR refusal on the wire.
var csrReasons = []struct {
	name string
	err  error
}{
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

// errorFor turns an issuance error into its wire form.
func errorFor(err error) *wireError {
	switch {
	case errors.Is(err, pki.ErrCSRRejected) || errors.Is(err, pki.ErrCSRKeyIsDAK):
		we := &wireError{Code: CodeCSRRejected, Message: err.Error()}
		for _, r := range csrReasons {
			if errors.Is(err, r.err) {
				we.Reason = r.name
				break
			}
		}
		return we
	case errors.Is(err, budget.ErrExhausted):
		return &wireError{Code: CodeBudgetExhausted, Message: err.Error()}
	default:
		return &wireError{Code: CodeSignerFailed, Message: err.Error()}
	}
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

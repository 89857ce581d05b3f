// Package ledger is the station's durable record of every device identity: one record per
// certificate, written before anything is signed and advanced at each step, so a crash at any
// moment leaves a record that says exactly how far the device got, and a rerun never signs twice.
//
// # Concepts
//
//   - Record: one certificate (or one reservation for it), keyed by the device: the SHA-256 of
//     the device's public key (SubjectPublicKeyInfo DER), and the device's own serial/DSN when it
//     reports one. The slot (bench target), station and run are fields, not keys.
//   - States: reserved (before signing; the budget is counted) -> issued (signed, chain held) ->
//     stored (on the device) -> verified (read back) -> replaced (a reprovision took its place).
//     A live record is one not replaced; no device key and no device id has two live records.
//   - Budget: each DAK's signature count lives in the ledger and is raised in the same
//     transaction as the reservation, so stations sharing a DAK on one PostgreSQL server never
//     exceed its maximum together.
//   - Stores: SQLite (modernc.org/sqlite, pure Go, WAL) by default, PostgreSQL (pgx) for several
//     stations. Both pass one test suite. The schema is versioned; migrations run at open, and a
//     ledger from a newer schema is refused untouched.
package ledger

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// State is how far a record's certificate got.
type State string

// States, in order.
const (
	Reserved State = "reserved"
	Issued   State = "issued"
	Stored   State = "stored"
	Verified State = "verified"
	Replaced State = "replaced"
)

// Live says whether a record in this state is a device's current identity (or on its way).
func (s State) Live() bool { return s == Reserved || s == Issued || s == Stored || s == Verified }

// rank orders states for Advance: a record never goes backwards.
func (s State) rank() int {
	switch s {
	case Reserved:
		return 1
	case Issued:
		return 2
	case Stored:
		return 3
	case Verified:
		return 4
	case Replaced:
		return 5
	}
	return 0
}

var (
	// ErrBudgetExhausted: the DAK has made its maximum number of signatures.
	ErrBudgetExhausted = errors.New("DAK signature budget exhausted")
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("no such ledger record")
	// ErrLiveRecord: the device (key or id) already has a live record and the reservation does
	// not replace it.
	ErrLiveRecord = errors.New("device already has a live ledger record")
	// ErrSchemaTooNew: the ledger was written by a newer hilbench; nothing is written to it.
	ErrSchemaTooNew = errors.New("ledger schema is newer than this hilbench understands")
	// ErrCorrupt: the ledger file is not a ledger or is damaged.
	ErrCorrupt = errors.New("ledger is corrupt")
	// ErrState: a transition the state machine does not allow (backwards, or from replaced).
	ErrState = errors.New("ledger state transition not allowed")
	// ErrUnavailable: the store cannot be reached (PostgreSQL down, connection lost).
	ErrUnavailable = errors.New("ledger unavailable")
)

// Record is one certificate of one device.
type Record struct {
	ID        int64  `json:"id"`
	DeviceKey string `json:"device_key"`          // SHA-256 (hex) of the device's SubjectPublicKeyInfo DER
	DeviceID  string `json:"device_id,omitempty"` // the device's serial/DSN, when it reports one
	Target    string `json:"target"`              // bench slot
	Station   string `json:"station"`             // station id (host name unless the bench names one)
	RunID     string `json:"run_id"`
	DAKSHA256 string `json:"dak_sha256"` // SHA-256 of the DAK certificate DER
	CSRSHA256 string `json:"csr_sha256"` // SHA-256 of the CSR DER the reservation was made for
	// Holder names the process that made (or last took over) the reservation, so that another
	// station or process never signs for a device key one is signing for right now.
	Holder string `json:"holder,omitempty"`
	State  State  `json:"state"`
	// Signatures counts the DAK signatures made for this record: 1 normally, more when a crash
	// between reservation and issue made the rerun sign again (the first may or may not have been made).
	Signatures int `json:"signatures"`

	// Set once issued.
	Serial     string    `json:"serial,omitempty"`      // upper-case hex, as openssl x509 -serial
	CertSHA256 string    `json:"fingerprint,omitempty"` // SHA-256 (hex) of the leaf DER
	Subject    string    `json:"subject,omitempty"`
	NotBefore  time.Time `json:"not_before,omitzero"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	ChainPEM   string    `json:"chain_pem,omitempty"` // leaf, DAK, intermediates

	ReservedAt time.Time `json:"reserved_at"`
	IssuedAt   time.Time `json:"issued_at,omitzero"`
	StoredAt   time.Time `json:"stored_at,omitzero"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	ReplacedAt time.Time `json:"replaced_at,omitzero"`
	ReplacedBy int64     `json:"replaced_by,omitempty"` // the record that took this one's place
}

// Reservation asks for one signature for one device.
type Reservation struct {
	DeviceKey string
	DeviceID  string
	Target    string
	Station   string
	RunID     string
	DAKSHA256 string
	CSRSHA256 string
	// Holder names the reserving process (see Record.Holder). A live reserved record of the
	// same device key is reused (signed again: its first signature may or may not have been
	// made) only when its holder is Holder, or, with TakeOver, TakeOverFrom: the caller judged
	// that holder gone (a process that died, a lease that ran out). Otherwise ErrLiveRecord.
	Holder       string
	TakeOver     bool
	TakeOverFrom string
	// MaxSignatures is the DAK's budget (<= 0: unlimited, still counted). It is configuration:
	// the value given applies to this reservation.
	MaxSignatures int64
	// Replaces names live records this reservation replaces (a reprovision): they become
	// replaced in the same transaction. Any other live record of the same device key or device
	// id makes Reserve fail with ErrLiveRecord.
	Replaces []int64
}

// Budget is one DAK's signature count.
type Budget struct {
	DAKSHA256 string `json:"dak_sha256"`
	Used      int64  `json:"used"`
	Max       int64  `json:"max"` // the maximum given at the last reservation; <= 0 unlimited
}

// Certificate is what Issue records.
type Certificate struct {
	Serial     string
	CertSHA256 string
	Subject    string
	NotBefore  time.Time
	NotAfter   time.Time
	ChainPEM   string
}

// Filter selects records for List; zero fields match everything.
type Filter struct {
	DeviceKey string
	DeviceID  string
	Target    string
	State     State
	LiveOnly  bool
}

// Problem is one inconsistency Check found.
type Problem struct {
	Kind     string `json:"kind"` // budget_mismatch, missing_chain, two_live_records, ...
	RecordID int64  `json:"record_id,omitempty"`
	Detail   string `json:"detail"`
}

// Store is a ledger. Implementations are safe for concurrent use, also by several processes
// (SQLite) or stations (PostgreSQL) sharing one ledger.
type Store interface {
	// Reserve records a reservation and counts one signature against the DAK's budget, in one
	// transaction. A live record for the same device key in state reserved is not duplicated:
	// when its holder allows (see Reservation.Holder) its Signatures count and the budget go up
	// by one and it is returned (the caller signs again). A live record in a later state fails with ErrLiveRecord (the caller should have
	// used its chain). ErrBudgetExhausted when the budget is used up; nothing is written then.
	Reserve(ctx context.Context, r Reservation) (*Record, Budget, error)
	// ReserveIssued is Reserve and Issue in one transaction: the record (new, or the reserved
	// one Reserve would reuse) is issued with c at once, and the signature counted. For a
	// signature made in this process before the ledger was asked, which the caller discards
	// when this fails (ErrLiveRecord, ErrBudgetExhausted: nothing is written then).
	ReserveIssued(ctx context.Context, r Reservation, c Certificate) (*Record, Budget, error)
	// Issue moves a reserved record to issued with its certificate.
	Issue(ctx context.Context, id int64, c Certificate) error
	// Advance moves a record forward to stored or verified (never backwards; a record already
	// in the state or past it is left alone, no error).
	Advance(ctx context.Context, id int64, to State) error
	// Get returns one record (ErrNotFound).
	Get(ctx context.Context, id int64) (*Record, error)
	// Live returns the live record of a device key (ErrNotFound when none).
	Live(ctx context.Context, deviceKey string) (*Record, error)
	// List returns the records the filter selects, oldest first.
	List(ctx context.Context, f Filter) ([]Record, error)
	// Budget returns a DAK's count (zero Used when the ledger never saw the DAK).
	Budget(ctx context.Context, dakSHA256 string) (Budget, error)
	// Import writes a record as given (its ID is assigned), counting its Signatures against its
	// DAK's budget; for bringing earlier audit logs and records in. A record whose
	// CertSHA256 the ledger already holds is skipped (imported false).
	Import(ctx context.Context, r Record) (imported bool, err error)
	// SetBudgetFloor raises a DAK's used count to at least used (importing a budget file whose
	// counter is ahead of the records, because signatures were made that left no record).
	SetBudgetFloor(ctx context.Context, dakSHA256 string, used int64) error
	// Check proves the ledger consistent: each DAK's used count equals the signatures its
	// records count, every record past reserved has its chain, no device key or device id has
	// two live records. It returns the problems found (none: consistent).
	Check(ctx context.Context) ([]Problem, error)
	// SetupPIN returns the setup PIN recorded for a device key, making it with gen and recording
	// it first when there is none: one PIN per device key, kept; safe to repeat.
	SetupPIN(ctx context.Context, deviceKey string, gen func() (string, error)) (string, error)
	// BeginTest records a station test run as RUNNING (ErrExists for an id already recorded).
	BeginTest(ctx context.Context, t TestRun) error
	// EndTest ends a RUNNING test run with its outcome and record (the same outcome again: no
	// error; another: ErrNotRunning).
	EndTest(ctx context.Context, id string, outcome TestOutcome, ended time.Time, record []byte) error
	// GetTest returns one test run (ErrNotFound).
	GetTest(ctx context.Context, id string) (*TestRun, error)
	// ListTests returns the test runs the filter selects, newest first.
	ListTests(ctx context.Context, f TestFilter) ([]TestRun, error)
	// Describe names the store for messages (file path, or host/database without password).
	Describe() string
	Close() error
}

// CanAdvance says whether a record in state from may move to to.
func CanAdvance(from, to State) bool {
	if from == Replaced || to == Replaced || to == Reserved {
		return false
	}
	return to.rank() >= from.rank()
}

// KeyHash is the device key a record is filed under: the lower-case hex SHA-256 of the public
// key's SubjectPublicKeyInfo DER as crypto/x509 marshals it (one encoding for a key whether it
// came from a CSR or a certificate).
func KeyHash(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("device public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

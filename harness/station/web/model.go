// Package web serves the factory station's operator page: a tile per slot, the station's
// counters, the last test records, stop/start per slot and the operator id, updated live by
// server-sent events. The station runner owns the state; it calls Publish with a Snapshot on
// every change and answers the page's requests through Control.
package web

import "time"

// SlotState is one slot's tile.
type SlotState struct {
	Name        string    `json:"name"`         // the bench target name
	State       string    `json:"state"`        // "idle" (no DUT), "running", "pass", "fail", "error", "aborted", "stopped", "stopping"
	DUT         string    `json:"dut"`          // the DUT's serial/DSN, once known
	Phase       string    `json:"phase"`        // the phase running now
	Started     time.Time `json:"started"`      // when the current/last DUT's test started (zero when idle)
	Ended       time.Time `json:"ended"`        // when it ended (zero while running)
	FailedPhase string    `json:"failed_phase"` // for fail/error/aborted
	Message     string    `json:"message"`      // the failure message (never secrets)
	RecordID    string    `json:"record_id"`    // the last test record's id
}

// Slot states.
const (
	StateIdle     = "idle"
	StateRunning  = "running"
	StatePass     = "pass"
	StateFail     = "fail"
	StateError    = "error"
	StateAborted  = "aborted"
	StateStopped  = "stopped"
	StateStopping = "stopping"
)

// Counters are the station's totals since it started.
type Counters struct {
	Passed         int     `json:"passed"`
	Failed         int     `json:"failed"`
	Errors         int     `json:"errors"`
	Aborted        int     `json:"aborted"`
	Yield          float64 `json:"yield"` // passed / finished
	DUTsPerHour    float64 `json:"duts_per_hour"`
	SignaturesLeft int64   `json:"signatures_left"` // -1 when unknown
	Signer         string  `json:"signer"`          // the signer's state/description
}

// RecordLink is one finished test record in the page's list.
type RecordLink struct {
	ID      string    `json:"id"`
	DUT     string    `json:"dut"`
	Slot    string    `json:"slot"`
	Outcome string    `json:"outcome"`
	Ended   time.Time `json:"ended"`
}

// Snapshot is the whole page's state at one moment.
type Snapshot struct {
	Station  string       `json:"station"`
	Operator string       `json:"operator"`
	Slots    []SlotState  `json:"slots"`
	Counters Counters     `json:"counters"`
	Recent   []RecordLink `json:"recent"` // newest first
	// Now is the server's clock when it sent the snapshot to a page (the server sets it; what
	// Publish is given is ignored): the page ticks elapsed times from it, so a browser whose
	// clock is off still shows them right.
	Now time.Time `json:"now,omitzero"`
}

// Control is what the page may ask of the station. Errors are user errors (unknown slot, bad
// operator id) → 4xx.
type Control interface {
	StopSlot(name string) error
	StartSlot(name string) error
	SetOperator(id string) error
	Record(id string) ([]byte, error)     // the test record JSON; fs.ErrNotExist → 404
	Transcript(id string) ([]byte, error) // the DUT's transcript text; fs.ErrNotExist → 404
}

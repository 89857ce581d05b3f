// Package testrecord is the record of one DUT's test at the station (OpenHTF's TestRecord is the
// model): who tested which device where and when, each phase with its outcome, timing and
// measurements, the attachments (transcript, chain), the identity the device was given, and the
// outcome. It is written as JSON (docs/schemas/test-record.schema.json) and, per batch, as JUnit
// XML for a manufacturing execution system (MES: the factory's production database).
package testrecord

import (
	"encoding/json"
	"fmt"
	"time"

	"hilbench/harness/atomicfile"
)

// SchemaID names the record format; it changes when a field changes meaning.
const SchemaID = "hilbench/test-record/v1"

// Outcomes of a test and of a phase.
const (
	Running = "RUNNING"
	Pass    = "PASS"
	Fail    = "FAIL"  // the DUT did not meet the plan (a measurement, a chain, a step of the device)
	Error   = "ERROR" // the test could not judge the DUT (station, signer, ledger, a DUT that stopped answering)
	Aborted = "ABORTED"
	Skip    = "SKIP" // a phase not run because an earlier one failed
)

// Record is one DUT's test.
type Record struct {
	Schema      string       `json:"schema"`
	ID          string       `json:"id"`
	DUTID       string       `json:"dut_id"`
	Station     string       `json:"station"`
	Slot        string       `json:"slot"`
	Operator    string       `json:"operator"`
	RunID       string       `json:"run_id"`
	Plan        string       `json:"plan"`
	StartedAt   time.Time    `json:"started_at"`
	EndedAt     time.Time    `json:"ended_at"`
	Outcome     string       `json:"outcome"`
	FailedPhase string       `json:"failed_phase,omitempty"`
	Message     string       `json:"message,omitempty"`
	Phases      []Phase      `json:"phases"`
	Identity    *Identity    `json:"identity,omitempty"`
	Attachments []Attachment `json:"attachments"`
}

// Phase is one phase's result.
type Phase struct {
	Name         string            `json:"name"`
	Type         string            `json:"type"`
	Outcome      string            `json:"outcome"`
	StartedAt    time.Time         `json:"started_at"`
	EndedAt      time.Time         `json:"ended_at"`
	DurationMS   int64             `json:"duration_ms"`
	Attempts     int               `json:"attempts"`
	Message      string            `json:"message,omitempty"`
	Step         string            `json:"step,omitempty"` // the device step that failed
	Measurements []Measurement     `json:"measurements,omitempty"`
	Facts        map[string]string `json:"facts,omitempty"`
}

// Measurement is a value a phase captured and how it was judged.
type Measurement struct {
	Name    string   `json:"name"`
	Value   string   `json:"value"`
	Outcome string   `json:"outcome"` // PASS or FAIL
	Min     *float64 `json:"min,omitempty"`
	Max     *float64 `json:"max,omitempty"`
	Equals  *string  `json:"equals,omitempty"`
	Units   string   `json:"units,omitempty"`
}

// Identity is what the DUT was given, as the product's records need it.
type Identity struct {
	CertificateSerial   string    `json:"certificate_serial"` // hexadecimal
	Fingerprint         string    `json:"fingerprint"`        // SHA-256 of the leaf certificate (DER), hex
	Subject             string    `json:"subject"`
	NotAfter            time.Time `json:"not_after"`
	DAK                 string    `json:"dak"` // the DAK certificate's subject
	DAKFingerprint      string    `json:"dak_fingerprint"`
	Attestation         string    `json:"attestation"` // how the DAK's key is held (signer description)
	ControlLogPublicKey string    `json:"control_log_public_key,omitempty"`
	BarcodePublicKey    string    `json:"barcode_public_key,omitempty"`
	Already             bool      `json:"already"` // the DUT held the ledger's chain already: nothing signed
	Reused              bool      `json:"reused"`  // the chain came from the ledger (an interrupted run): nothing signed
}

// Attachment is a file that belongs to the record.
type Attachment struct {
	Name      string `json:"name"` // "transcript", "chain"
	Path      string `json:"path"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

// New starts a record.
func New(id, dut, station, slot, operator, runID, plan string, started time.Time) *Record {
	return &Record{Schema: SchemaID, ID: id, DUTID: dut, Station: station, Slot: slot, Operator: operator,
		RunID: runID, Plan: plan, StartedAt: started.UTC(), Outcome: Running, Phases: []Phase{}, Attachments: []Attachment{}}
}

// JSON is the record as indented JSON.
func (r *Record) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Parse reads a record and checks it names this format.
func Parse(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("test record: %w", err)
	}
	if r.Schema != SchemaID {
		return nil, fmt.Errorf("test record: schema %q, want %q", r.Schema, SchemaID)
	}
	return &r, nil
}

// WriteFile writes the record atomically (temp file, fsync, rename): a crash leaves the old
// record or the new one, never half of one.
func (r *Record) WriteFile(path string) error {
	b, err := r.JSON()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o644)
}

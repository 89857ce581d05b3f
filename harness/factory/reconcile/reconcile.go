// Package reconcile makes the check AWS IoT Core for Amazon Sidewalk makes when devices are
// imported (the Sidewalk bulk provisioning guide): the serial numbers (SMSNs) in the CSV a
// contract manufacturer hands over must match the entries of the control logs one to one.
//
// # Concepts
//
//   - Every SMSN of the CSV has exactly one control-log entry and every entry is in the CSV;
//     an SMSN twice in the CSV or in the logs is a problem of its own.
//   - The product must agree: an entry's APID is the CSV row's (when it names one) and the
//     expected one (the bench's); a row that names its device type, DSN and APID must hash to
//     its SMSN (SHA-256 of deviceType-STAGE+DSN+APID), so a wrong device type shows.
//   - A log whose SHA-256 file does not match is reported: it was changed or cut short.
//   - A malformed CSV is an error naming its line, not a report: nothing can be compared.
package reconcile

import (
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"hilbench/harness/factory/controllog"
)

// ErrCSV: the serials file is not a CSV of SMSNs.
var ErrCSV = errors.New("serials CSV")

// Row is one device of the CSV.
type Row struct {
	Line       int
	SMSN       string // upper case
	DSN        string
	DeviceType string
	APID       string
	Stage      string
}

// Columns the CSV may have (header row). Only smsn is required. A file without a header holds
// SMSNs alone, one a line.
var Columns = []string{"smsn", "dsn", "device_type", "apid", "stage"}

// ReadCSV reads the serials file. Errors name the line.
func ReadCSV(r io.Reader, name string) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var rows []Row
	cols := map[string]int{"smsn": 0}
	width := 0
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w %s:%d: %v", ErrCSV, name, pe.Line, pe.Err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrCSV, name, err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			width = len(rec)
			if !isSMSN(rec[0]) {
				cols = map[string]int{}
				for i, h := range rec {
					h = strings.ToLower(strings.TrimSpace(h))
					if !slices.Contains(Columns, h) {
						return nil, fmt.Errorf("%w %s:%d: unknown column %q (columns: %s; or no header and SMSNs alone)", ErrCSV, name, line, h, strings.Join(Columns, ", "))
					}
					if _, dup := cols[h]; dup {
						return nil, fmt.Errorf("%w %s:%d: column %q given twice", ErrCSV, name, line, h)
					}
					cols[h] = i
				}
				if _, ok := cols["smsn"]; !ok {
					return nil, fmt.Errorf("%w %s:%d: no smsn column", ErrCSV, name, line)
				}
				continue
			}
		}
		if len(rec) != width {
			return nil, fmt.Errorf("%w %s:%d: %d fields, the first line has %d", ErrCSV, name, line, len(rec), width)
		}
		get := func(c string) string {
			if i, ok := cols[c]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := Row{Line: line, SMSN: strings.ToUpper(get("smsn")), DSN: get("dsn"), DeviceType: get("device_type"), APID: get("apid"), Stage: get("stage")}
		if !isSMSN(row.SMSN) {
			return nil, fmt.Errorf("%w %s:%d: SMSN %q is not 64 hex digits", ErrCSV, name, line, row.SMSN)
		}
		if row.Stage != "" && !slices.Contains(controllog.Stages, strings.ToLower(row.Stage)) {
			return nil, fmt.Errorf("%w %s:%d: stage %q is not one of %s", ErrCSV, name, line, row.Stage, strings.Join(controllog.Stages, ", "))
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w %s: no SMSNs", ErrCSV, name)
	}
	return rows, nil
}

func isSMSN(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Expect is what the product must be (the bench's factory settings); empty fields are not
// checked.
type Expect struct {
	DeviceType string
	APID       string
	Stage      string
}

// Problem kinds.
const (
	MissingInLogs      = "missing_in_logs"
	MissingInCSV       = "missing_in_csv"
	DuplicateInCSV     = "duplicate_in_csv"
	DuplicateInLogs    = "duplicate_in_logs"
	APIDMismatch       = "apid_mismatch"
	DeviceTypeMismatch = "device_type_mismatch"
	SMSNMismatch       = "smsn_mismatch"
	Checksum           = "checksum"
)

// Problem is one disagreement.
type Problem struct {
	Kind   string `json:"kind"`
	SMSN   string `json:"smsn,omitempty"`
	Detail string `json:"detail"`
}

// Report is the outcome.
type Report struct {
	Rows     int       `json:"csv_rows"`
	Logs     int       `json:"logs"`
	Entries  int       `json:"log_entries"`
	Matched  int       `json:"matched"`
	Problems []Problem `json:"problems"`
}

// OK says whether the CSV and the logs agree.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) add(kind, smsn, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Kind: kind, SMSN: smsn, Detail: fmt.Sprintf(format, args...)})
}

type where struct {
	file  string
	index int
	apid  string
}

// Check compares the CSV's rows with the Sidewalk control logs.
func Check(rows []Row, logs []controllog.File, want Expect, csvName string) *Report {
	r := &Report{Rows: len(rows), Logs: len(logs), Problems: []Problem{}}
	entries := map[string][]where{}
	for _, l := range logs {
		if !l.SumOK {
			r.add(Checksum, "", "%s: %s", filepath.Base(l.Path), l.SumProblem)
		}
		for _, s := range l.Serials {
			r.Entries++
			smsn := strings.ToUpper(s.Serial)
			entries[smsn] = append(entries[smsn], where{file: filepath.Base(l.Path), index: s.Index, apid: s.APID})
		}
	}
	byLine := map[string][]int{}
	for _, row := range rows {
		byLine[row.SMSN] = append(byLine[row.SMSN], row.Line)
	}
	for _, row := range rows {
		lines := byLine[row.SMSN]
		if len(lines) > 1 && lines[0] == row.Line {
			r.add(DuplicateInCSV, row.SMSN, "%s lines %s", csvName, joinInts(lines))
		}
		if len(lines) > 1 && lines[0] != row.Line {
			continue // reported with its first line
		}
		if want.DeviceType != "" && row.DeviceType != "" && row.DeviceType != want.DeviceType {
			r.add(DeviceTypeMismatch, row.SMSN, "%s:%d: device type %q, the bench's is %q", csvName, row.Line, row.DeviceType, want.DeviceType)
		}
		if want.APID != "" && row.APID != "" && row.APID != want.APID {
			r.add(APIDMismatch, row.SMSN, "%s:%d: APID %q, the bench's is %q", csvName, row.Line, row.APID, want.APID)
		}
		if row.DSN != "" && row.DeviceType != "" && row.APID != "" {
			stage := firstOf(row.Stage, want.Stage, "production")
			if s, err := controllog.SMSN(row.DeviceType, stage, row.DSN, row.APID); err == nil && s != row.SMSN {
				r.add(SMSNMismatch, row.SMSN, "%s:%d: device type %q, stage %s, DSN %q and APID %q hash to %s, not this SMSN",
					csvName, row.Line, row.DeviceType, strings.ToUpper(stage), row.DSN, row.APID, s)
			}
		}
		ws := entries[row.SMSN]
		if len(ws) == 0 {
			r.add(MissingInLogs, row.SMSN, "%s:%d: no control-log entry", csvName, row.Line)
			continue
		}
		r.Matched++
		if row.APID != "" && ws[0].apid != row.APID {
			r.add(APIDMismatch, row.SMSN, "%s:%d: APID %q, its control-log entry (%s #%d) says %q", csvName, row.Line, row.APID, ws[0].file, ws[0].index+1, ws[0].apid)
		}
	}
	smsns := make([]string, 0, len(entries))
	for s := range entries {
		smsns = append(smsns, s)
	}
	sort.Strings(smsns)
	for _, s := range smsns {
		ws := entries[s]
		if len(ws) > 1 {
			var at []string
			for _, w := range ws {
				at = append(at, fmt.Sprintf("%s #%d", w.file, w.index+1))
			}
			r.add(DuplicateInLogs, s, "in %s", strings.Join(at, ", "))
		}
		for _, w := range ws {
			if want.APID != "" && w.apid != want.APID {
				r.add(APIDMismatch, s, "%s #%d: APID %q, the bench's is %q", w.file, w.index+1, w.apid, want.APID)
			}
		}
		if _, ok := byLine[s]; !ok {
			r.add(MissingInCSV, s, "%s #%d: not in %s", ws[0].file, ws[0].index+1, csvName)
		}
	}
	return r
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// WriteText writes the report for a person: a summary line, then one line a problem.
func (r *Report) WriteText(w io.Writer) error {
	verdict := "MATCH"
	if !r.OK() {
		verdict = fmt.Sprintf("MISMATCH (%d problems)", len(r.Problems))
	}
	if _, err := fmt.Fprintf(w, "%s: %d SMSNs in the CSV, %d entries in %d control logs, %d matched\n",
		verdict, r.Rows, r.Entries, r.Logs, r.Matched); err != nil {
		return err
	}
	for _, p := range r.Problems {
		smsn := ""
		if p.SMSN != "" {
			smsn = " " + p.SMSN
		}
		if _, err := fmt.Fprintf(w, "  %s%s: %s\n", p.Kind, smsn, p.Detail); err != nil {
			return err
		}
	}
	return nil
}

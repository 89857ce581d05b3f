// Package report collects per-target outcomes of a run and writes them as a summary table and
// as JSON, so a bench engineer reads the table and a line's MES or a nightly dashboard reads the JSON.
//
// # Concepts
//
//   - Outcome: one target's result for one operation: passed or failed, the step it failed at,
//     the error, how long it took, and facts worth keeping (certificate fingerprint, ...).
//   - Report: the outcomes of a run, in target order, with the run's start and end.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Outcome is one target's result.
type Outcome struct {
	Target   string            `json:"target"`
	Op       string            `json:"op"`
	Passed   bool              `json:"passed"`
	Step     string            `json:"step,omitempty"` // the step that failed
	Error    string            `json:"error,omitempty"`
	Duration time.Duration     `json:"duration_ns"`
	Facts    map[string]string `json:"facts,omitempty"`
}

// Report is a run's outcomes. Safe for concurrent Add.
type Report struct {
	Command  string     `json:"command"`
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	Outcomes []*Outcome `json:"outcomes"`
	mu       sync.Mutex
}

// New starts a report for a command.
func New(command string, now time.Time) *Report { return &Report{Command: command, Started: now} }

// Add records an outcome.
func (r *Report) Add(o *Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Outcomes = append(r.Outcomes, o)
}

// Finish sorts the outcomes by target and operation and stamps the end.
func (r *Report) Finish(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Finished = now
	sort.SliceStable(r.Outcomes, func(i, j int) bool {
		return r.Outcomes[i].Target < r.Outcomes[j].Target
	})
}

// Failed counts failed outcomes.
func (r *Report) Failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.Outcomes {
		if !o.Passed {
			n++
		}
	}
	return n
}

// WriteTable writes the summary table.
func (r *Report) WriteTable(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tOP\tRESULT\tSTEP\tTIME\tDETAIL")
	passed := 0
	for _, o := range r.Outcomes {
		result, detail := "FAIL", o.Error
		if o.Passed {
			result, detail = "PASS", o.Facts["sha256"]
			passed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Target, o.Op, result, dash(o.Step), o.Duration.Round(time.Millisecond), oneLine(detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d passed, %d failed\n", passed, len(r.Outcomes)-passed)
	return err
}

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	r.mu.Lock()
	data, err := json.MarshalIndent(r, "", "  ")
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

package soak

import (
	"fmt"
	"strings"
	"time"

	"hilbench/harness/atomicfile"
	"hilbench/harness/junit"
)

// JUnit XML as Jenkins, GitLab and the usual dashboards read it: one suite per target, one test
// case per step (its runs in system-out), and a suite "identity" with one case per counter.

// WriteJUnit writes the report as JUnit XML.
func (r *Report) WriteJUnit(path string) error {
	data, err := r.junit()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

func (r *Report) junit() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := junit.Suites{Name: "hil soak", Time: junit.Seconds(r.Finished.Sub(r.Started))}
	id := junit.Suite{Name: "soak.identity", Timestamp: junit.Timestamp(r.Started),
		Properties: []junit.Property{
			{Name: "seed", Value: fmt.Sprint(r.Seed)},
			{Name: "cycles", Value: fmt.Sprint(r.Cycles)},
			{Name: "faults", Value: strings.Join(r.Faults, ",")},
		}}
	counter := func(name string, n int, kind string) {
		c := junit.Case{Name: name, Classname: "soak.identity"}
		if n > 0 {
			var lines []string
			for _, f := range r.Failures {
				if f.Kind == kind {
					lines = append(lines, fmt.Sprintf("%s cycle %d after %s: %s", f.Target, f.Cycle, f.Step, f.Error))
				}
			}
			c.Failure = &junit.Problem{Message: fmt.Sprintf("%s: %d", name, n), Type: kind, Text: strings.Join(lines, "\n")}
		}
		id.Add(c)
	}
	counter("torn_chains", r.Counters.TornChains, KindTorn)
	counter("changed_chains", r.Counters.ChangedChains, KindChanged)
	counter("double_signatures", r.Counters.DoubleSignatures, KindDouble)
	counter("ledger_inconsistencies", r.Counters.LedgerInconsistencies, KindLedger)
	all.Suites = append(all.Suites, id)

	for _, t := range r.Targets {
		s := junit.Suite{Name: "soak." + t.Name}
		var suiteTotal time.Duration
		for _, st := range t.Steps {
			var total time.Duration
			for _, d := range st.durations {
				total += d
			}
			c := junit.Case{Name: st.Step, Classname: "soak." + t.Name, Time: junit.Seconds(total),
				SystemOut: fmt.Sprintf("runs %d, failures %d, retries %d, flakes %d, p50 %.1f ms, p99 %.1f ms",
					st.Runs, st.Failures, st.Retries, st.Flakes, st.P50ms, st.P99ms)}
			if st.Failures > 0 {
				msg := fmt.Sprintf("%d of %d runs failed", st.Failures, st.Runs)
				text := ""
				typ := KindStep
				if st.First != nil {
					typ = st.First.Kind
					msg += fmt.Sprintf("; first at cycle %d: %s", st.First.Cycle, st.First.Error)
					text = st.First.Transcript
				}
				c.Failure = &junit.Problem{Message: msg, Type: typ, Text: text}
			}
			s.Add(c)
			suiteTotal += total
		}
		s.Time = junit.Seconds(suiteTotal)
		all.Suites = append(all.Suites, s)
	}
	return all.Marshal()
}

package soak

import (
	"encoding/xml"
	"fmt"
	"strings"

	"hilbench/harness/atomicfile"
)

// JUnit XML as Jenkins, GitLab and the usual dashboards read it: one suite per target, one test
// case per step (its runs in system-out), and a suite "identity" with one case per counter.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string          `xml:"name,attr"`
	Tests     int             `xml:"tests,attr"`
	Failures  int             `xml:"failures,attr"`
	Time      float64         `xml:"time,attr"`
	Timestamp string          `xml:"timestamp,attr,omitempty"`
	Props     *junitProps     `xml:"properties,omitempty"`
	Cases     []junitTestCase `xml:"testcase"`
}

type junitProps struct {
	Props []junitProp `xml:"property"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitTestCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

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
	all := junitSuites{Name: "hil soak", Time: r.Finished.Sub(r.Started).Seconds()}
	id := junitSuite{Name: "soak.identity", Timestamp: r.Started.UTC().Format("2006-01-02T15:04:05"),
		Props: &junitProps{Props: []junitProp{
			{Name: "seed", Value: fmt.Sprint(r.Seed)},
			{Name: "cycles", Value: fmt.Sprint(r.Cycles)},
			{Name: "faults", Value: strings.Join(r.Faults, ",")},
		}}}
	counter := func(name string, n int, kind string) {
		c := junitTestCase{Name: name, Classname: "soak.identity"}
		if n > 0 {
			var lines []string
			for _, f := range r.Failures {
				if f.Kind == kind {
					lines = append(lines, fmt.Sprintf("%s cycle %d after %s: %s", f.Target, f.Cycle, f.Step, f.Error))
				}
			}
			c.Failure = &junitFailure{Message: fmt.Sprintf("%s: %d", name, n), Type: kind, Text: strings.Join(lines, "\n")}
			id.Failures++
		}
		id.Cases = append(id.Cases, c)
		id.Tests++
	}
	counter("torn_chains", r.Counters.TornChains, KindTorn)
	counter("changed_chains", r.Counters.ChangedChains, KindChanged)
	counter("double_signatures", r.Counters.DoubleSignatures, KindDouble)
	counter("ledger_inconsistencies", r.Counters.LedgerInconsistencies, KindLedger)
	all.Suites = append(all.Suites, id)

	for _, t := range r.Targets {
		s := junitSuite{Name: "soak." + t.Name}
		for _, st := range t.Steps {
			var total float64
			for _, d := range st.durations {
				total += d.Seconds()
			}
			c := junitTestCase{Name: st.Step, Classname: "soak." + t.Name, Time: total,
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
				c.Failure = &junitFailure{Message: msg, Type: typ, Text: text}
				s.Failures++
			}
			s.Cases = append(s.Cases, c)
			s.Tests++
			s.Time += total
		}
		all.Suites = append(all.Suites, s)
	}
	for _, s := range all.Suites {
		all.Tests += s.Tests
		all.Failures += s.Failures
	}
	out, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

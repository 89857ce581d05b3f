package testrecord

import (
	"fmt"
	"strings"
	"time"

	"hilbench/harness/junit"
)

// JUnit XML, as Jenkins and MES importers read it: a <testsuites> per batch, a <testsuite> per
// DUT (named by its serial, with the slot and the record id as properties), a <testcase> per
// phase. FAIL phases are <failure>, ERROR and ABORTED ones <error>, SKIP ones <skipped>.

// JUnit renders a batch of records (a station run) as one JUnit XML document.
func JUnit(name string, recs []*Record) ([]byte, error) {
	doc := junit.Suites{Name: name}
	var total time.Duration
	for _, r := range recs {
		s := junit.Suite{
			Name:      r.DUTID,
			Timestamp: junit.Timestamp(r.StartedAt),
			Hostname:  r.Station,
			Properties: []junit.Property{
				{Name: "record_id", Value: r.ID}, {Name: "slot", Value: r.Slot}, {Name: "operator", Value: r.Operator}, {Name: "outcome", Value: r.Outcome}, {Name: "plan", Value: r.Plan},
			},
		}
		if s.Name == "" {
			s.Name = r.Slot + " (serial unknown)"
		}
		if r.Identity != nil {
			s.Properties = append(s.Properties, junit.Property{Name: "certificate_serial", Value: r.Identity.CertificateSerial},
				junit.Property{Name: "fingerprint", Value: r.Identity.Fingerprint})
		}
		took := max(r.EndedAt.Sub(r.StartedAt), 0)
		s.Time = junit.Seconds(took)
		total += took
		for _, ph := range r.Phases {
			c := junit.Case{Name: ph.Name, Classname: "station." + r.Slot, Time: junit.Seconds(time.Duration(ph.DurationMS) * time.Millisecond)}
			var out []string
			for _, m := range ph.Measurements {
				out = append(out, fmt.Sprintf("%s = %s %s (%s)", m.Name, m.Value, m.Units, m.Outcome))
			}
			c.SystemOut = strings.Join(out, "\n")
			p := &junit.Problem{Message: ph.Message, Type: ph.Outcome, Text: ph.Message}
			switch ph.Outcome {
			case Fail:
				c.Failure = p
			case Error, Aborted:
				c.Error = p
			case Skip:
				c.Skipped = p
			}
			s.Add(c)
		}
		if len(r.Phases) == 0 {
			// A test that ended before its first phase (aborted at start) still shows.
			c := junit.Case{Name: "test", Classname: "station." + r.Slot, Time: s.Time}
			if r.Outcome != Pass {
				c.Error = &junit.Problem{Message: r.Message, Type: r.Outcome, Text: r.Message}
			}
			s.Add(c)
		}
		doc.Suites = append(doc.Suites, s)
	}
	doc.Time = junit.Seconds(total)
	return doc.Marshal()
}

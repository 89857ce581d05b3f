package testrecord

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// JUnit XML, as Jenkins and MES importers read it: a <testsuites> per batch, a <testsuite> per
// DUT (named by its serial, with the slot and the record id as properties), a <testcase> per
// phase. FAIL phases are <failure>, ERROR and ABORTED ones <error>, SKIP ones <skipped>.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func seconds(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }

// JUnit renders a batch of records (a station run) as one JUnit XML document.
func JUnit(name string, recs []*Record) ([]byte, error) {
	doc := junitSuites{Name: name}
	var total int64
	for _, r := range recs {
		s := junitSuite{
			Name:      r.DUTID,
			Timestamp: r.StartedAt.UTC().Format("2006-01-02T15:04:05"),
			Hostname:  r.Station,
			Properties: []junitProperty{
				{"record_id", r.ID}, {"slot", r.Slot}, {"operator", r.Operator}, {"outcome", r.Outcome}, {"plan", r.Plan},
			},
		}
		if s.Name == "" {
			s.Name = r.Slot + " (serial unknown)"
		}
		if r.Identity != nil {
			s.Properties = append(s.Properties, junitProperty{"certificate_serial", r.Identity.CertificateSerial},
				junitProperty{"fingerprint", r.Identity.Fingerprint})
		}
		ms := r.EndedAt.Sub(r.StartedAt).Milliseconds()
		if ms < 0 {
			ms = 0
		}
		s.Time = seconds(ms)
		total += ms
		for _, ph := range r.Phases {
			c := junitCase{Name: ph.Name, Classname: "station." + r.Slot, Time: seconds(ph.DurationMS)}
			var out []string
			for _, m := range ph.Measurements {
				out = append(out, fmt.Sprintf("%s = %s %s (%s)", m.Name, m.Value, m.Units, m.Outcome))
			}
			c.SystemOut = strings.Join(out, "\n")
			p := &junitProblem{Message: ph.Message, Type: ph.Outcome, Text: ph.Message}
			switch ph.Outcome {
			case Fail:
				c.Failure = p
				s.Failures++
			case Error, Aborted:
				c.Error = p
				s.Errors++
			case Skip:
				c.Skipped = p
				s.Skipped++
			}
			s.Cases = append(s.Cases, c)
		}
		if len(r.Phases) == 0 {
			// A test that ended before its first phase (aborted at start) still shows.
			c := junitCase{Name: "test", Classname: "station." + r.Slot, Time: s.Time}
			if r.Outcome != Pass {
				c.Error = &junitProblem{Message: r.Message, Type: r.Outcome, Text: r.Message}
				s.Errors++
			}
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
		doc.Suites = append(doc.Suites, s)
	}
	doc.Time = seconds(total)
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

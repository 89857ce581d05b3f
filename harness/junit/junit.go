// Package junit writes JUnit XML as Jenkins, GitLab and MES importers read it: the station's
// batches and the soak's report both hand their results on in it.
package junit

import (
	"encoding/xml"
	"fmt"
	"time"
)

// Suites is a JUnit XML document.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Time     string   `xml:"time,attr"`
	Suites   []Suite  `xml:"testsuite"`
}

// Suite is one <testsuite>; Add counts its cases.
type Suite struct {
	Name       string     `xml:"name,attr"`
	Tests      int        `xml:"tests,attr"`
	Failures   int        `xml:"failures,attr"`
	Errors     int        `xml:"errors,attr"`
	Skipped    int        `xml:"skipped,attr"`
	Time       string     `xml:"time,attr"`
	Timestamp  string     `xml:"timestamp,attr,omitempty"` // UTC, 2006-01-02T15:04:05
	Hostname   string     `xml:"hostname,attr,omitempty"`
	Properties []Property `xml:"-"`
	Cases      []Case     `xml:"testcase"`

	// Props is set by Marshal from Properties (no <properties> element without any).
	Props *properties `xml:"properties,omitempty"`
}

type properties struct {
	Property []Property `xml:"property"`
}

// Property is a name and value of a suite.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Case is one <testcase>: passed, or with one of Failure, Error or Skipped.
type Case struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      string   `xml:"time,attr"`
	Failure   *Problem `xml:"failure,omitempty"`
	Error     *Problem `xml:"error,omitempty"`
	Skipped   *Problem `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Problem is a failure, error or skip: a message, a type and a text.
type Problem struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Seconds is a duration as JUnit's time attributes hold it.
func Seconds(d time.Duration) string { return fmt.Sprintf("%.3f", max(d, 0).Seconds()) }

// Timestamp is a time as a suite's timestamp attribute holds it.
func Timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

// Add appends c to the suite and counts it.
func (s *Suite) Add(c Case) {
	s.Cases = append(s.Cases, c)
	s.Tests++
	switch {
	case c.Failure != nil:
		s.Failures++
	case c.Error != nil:
		s.Errors++
	case c.Skipped != nil:
		s.Skipped++
	}
}

// Marshal totals the suites' counts into the document and renders it, XML header first.
func (d *Suites) Marshal() ([]byte, error) {
	d.Tests, d.Failures, d.Errors, d.Skipped = 0, 0, 0, 0
	for i := range d.Suites {
		s := &d.Suites[i]
		s.Props = nil
		if len(s.Properties) > 0 {
			s.Props = &properties{Property: s.Properties}
		}
		d.Tests += s.Tests
		d.Failures += s.Failures
		d.Errors += s.Errors
		d.Skipped += s.Skipped
	}
	out, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

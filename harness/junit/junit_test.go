package junit

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestMarshalCountsAndReadsBack(t *testing.T) {
	t.Parallel()
	var s Suite
	s.Name = "dut-1"
	s.Properties = []Property{{Name: "slot", Value: "s1"}}
	s.Add(Case{Name: "provision", Time: Seconds(1500 * time.Millisecond)})
	s.Add(Case{Name: "verify", Failure: &Problem{Message: "chain <changed>", Type: "FAIL"}})
	s.Add(Case{Name: "reboot", Error: &Problem{Message: "no prompt"}})
	s.Add(Case{Name: "label", Skipped: &Problem{}})
	doc := Suites{Name: "batch", Time: Seconds(-time.Second), Suites: []Suite{s, {Name: "empty"}}}
	out, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), xml.Header) {
		t.Errorf("no XML header: %.60s", out)
	}
	var back struct {
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Time     string `xml:"time,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Props []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Time    string `xml:"time,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(out, &back); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if back.Tests != 4 || back.Failures != 1 || back.Errors != 1 || back.Skipped != 1 || back.Time != "0.000" {
		t.Errorf("totals %+v", back)
	}
	if len(back.Suites) != 2 || back.Suites[0].Props[0].Value != "s1" || back.Suites[0].Cases[0].Time != "1.500" ||
		back.Suites[0].Cases[1].Failure == nil || back.Suites[0].Cases[1].Failure.Message != "chain <changed>" {
		t.Errorf("read back %+v", back.Suites)
	}
	if strings.Contains(string(out), "<properties></properties>") {
		t.Errorf("an empty suite has an empty properties element:\n%s", out)
	}
}

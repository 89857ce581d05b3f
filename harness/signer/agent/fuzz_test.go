package agent

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzRequestLine: a running agent answers any request line with one answer, a JSON object
// carrying the request's id when the line is a JSON request (and "" otherwise), with an error
// code and message whenever it is not ok; a blank line gets no answer; and the connection still
// serves a status request sent right after it.
func FuzzRequestLine(f *testing.F) {
	d, _ := dak(f)
	st := openState(f, shortDir(f), 0)
	path := filepath.Join(shortDir(f), "agent.sock")
	start(f, newServer(f, d, st), path)
	csr, err := json.Marshal(string(makeCSR(f, nil)))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"op":"status","id":"1"}`,
		`{"op":"issue","id":"2","target":"slot1/dev","csr":` + string(csr) + `}`,
		`{"op":"issue","id":"3","target":"t","device_id":"G0A1","replaces":"MIIB","csr":` + string(csr) + `}`,
		`{"op":"lookup","id":"4","key":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}`,
		`{"op":"stored","id":"5","certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}`,
		`{"op":"verified","id":"6","certificate":"hello"}`,
		`{"op":"sign","id":"7"}`,
		`{"op":"status","id":8}`,
		`{"op":"status"} trailing`,
		`[1,2,3]`,
		`   `,
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	const statusID = "\x00fuzz status"
	statusLine, _ := json.Marshal(request{Op: OpStatus, ID: statusID})
	f.Fuzz(func(t *testing.T, line []byte) {
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		if len(line) > 16<<10 {
			t.Skip()
		}
		c := rawDial(t, path)
		_ = c.nc.SetDeadline(time.Now().Add(30 * time.Second))
		c.send(append(append(append([]byte(nil), line...), '\n'), append(statusLine, '\n')...))
		isStatus := func(r response) bool { return r.ID == statusID && r.OK && r.Status != nil }
		blank := len(bytes.TrimSpace(line)) == 0
		// An issue request is answered when the DAK has signed: possibly after the status.
		resp, statusSeen := c.read(), false
		if isStatus(resp) {
			if blank {
				return
			}
			resp, statusSeen = c.read(), true
		}
		if blank {
			t.Fatalf("blank line %q answered %+v", line, resp)
		}
		var req request
		wantID := ""
		if json.Unmarshal(line, &req) == nil {
			wantID = req.ID
		}
		if resp.ID != wantID {
			t.Fatalf("answer to %q has id %q, want %q (%+v)", line, resp.ID, wantID, resp)
		}
		if !resp.OK && (resp.Error == nil || resp.Error.Code == "" || strings.TrimSpace(resp.Error.Message) == "") {
			t.Fatalf("answer to %q: not ok, error %+v", line, resp.Error)
		}
		if !statusSeen {
			if after := c.read(); !isStatus(after) {
				t.Fatalf("status after %q: %+v", line, after)
			}
		}
	})
}

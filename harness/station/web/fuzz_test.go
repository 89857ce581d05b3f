package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzOperator: any body to POST /api/operator either reaches the station as exactly the id
// the JSON holds (and that id passes ValidOperator), or is refused with a 4xx and a reason
// and reaches nothing.
func FuzzOperator(f *testing.F) {
	for _, seed := range []string{
		`{"operator":"op-7"}`, `{"operator":""}`, `{"operator":"op 7"}`, `{"operator":"\u00e9"}`,
		`{"operator":"a","b":1}`, `[]`, `null`, `{"operator":"a"} {}`, `{"Operator":"ab"}`,
		`{"operator":"` + strings.Repeat("9", 32) + `"}`, `{"operator":"op\u002d7"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ctl := &fakeControl{}
		h := New(ctl, Options{}).Handler()
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/operator", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		calls := ctl.Calls()
		switch rec.Code {
		case http.StatusNoContent:
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("accepted a body encoding/json refuses: %q: %v", body, err)
			}
			id, _ := m["operator"].(string)
			if len(calls) != 1 || calls[0] != "operator "+id || ValidOperator(id) != nil {
				t.Fatalf("accepted %q: the station got %q", body, calls)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(calls) != 0 || strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("refused %q (%d %q), but the station got %q", body, rec.Code, rec.Body, calls)
			}
		default:
			t.Fatalf("%q: status %d %q", body, rec.Code, rec.Body)
		}
	})
}

// FuzzRecordID: a record id in the URL reaches the station only when ValidRecordID accepts it,
// as the same string, never holding '/' or "..".
func FuzzRecordID(f *testing.F) {
	for _, seed := range []string{"rec-1", "..", "a/../b", "2026-12-06T08:00:00Z-slot-1", "%2e%2e", ".hidden", "a..b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		var got []string
		ctl := &recordSpy{got: &got}
		h := New(ctl, Options{}).Handler()
		req, err := http.NewRequest("GET", "http://127.0.0.1:8080/records/"+url.PathEscape(id), nil)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch {
		case len(got) == 0:
			if rec.Code < 300 || rec.Code >= 500 {
				t.Fatalf("%q: nothing read, but status %d", id, rec.Code)
			}
		case len(got) != 1 || got[0] != id || ValidRecordID(id) != nil || strings.Contains(id, "/") || strings.Contains(id, ".."):
			t.Fatalf("%q: the station was asked for %q", id, got)
		}
	})
}

type recordSpy struct {
	fakeControl
	got *[]string
}

func (r *recordSpy) Record(id string) ([]byte, error) {
	*r.got = append(*r.got, id)
	return []byte("{}"), nil
}

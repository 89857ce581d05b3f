package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeControl records what the page asked and answers from fixed records.
type fakeControl struct {
	mu      sync.Mutex
	calls   []string
	slotErr error // StopSlot/StartSlot's answer
	records map[string]string
	readErr error
}

func (f *fakeControl) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeControl) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeControl) StopSlot(name string) error  { f.call("stop " + name); return f.slotErr }
func (f *fakeControl) StartSlot(name string) error { f.call("start " + name); return f.slotErr }
func (f *fakeControl) SetOperator(id string) error { f.call("operator " + id); return nil }

func (f *fakeControl) Record(id string) ([]byte, error) {
	if f.readErr != nil {
		return nil, f.readErr
	}
	if r, ok := f.records[id]; ok {
		return []byte(r), nil
	}
	return nil, fmt.Errorf("record %s: %w", id, fs.ErrNotExist)
}

func (f *fakeControl) Transcript(id string) ([]byte, error) {
	if r, ok := f.records[id]; ok {
		return []byte("transcript of " + r), nil
	}
	return nil, fs.ErrNotExist
}

func testSnapshot() Snapshot {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	return Snapshot{
		Station:  "line-1",
		Operator: "op-7",
		Slots: []SlotState{
			{Name: "A", State: StateRunning, DUT: "SN-0001", Phase: "provision", Started: t0},
			{Name: "B", State: StateFail, DUT: "SN-0002", Started: t0, Ended: t0.Add(time.Minute), FailedPhase: "verify", Message: "chain does not verify", RecordID: "rec-2"},
		},
		Counters: Counters{Passed: 3, Failed: 1, Yield: 0.75, DUTsPerHour: 41.5, SignaturesLeft: 997, Signer: "softdak"},
		Recent:   []RecordLink{{ID: "rec-2", DUT: "SN-0002", Slot: "B", Outcome: "FAIL", Ended: t0.Add(time.Minute)}},
	}
}

func newTestServer(t *testing.T, opts Options) (*Server, *fakeControl, *httptest.Server) {
	t.Helper()
	ctl := &fakeControl{records: map[string]string{"rec-2": `{"id":"rec-2"}`}}
	s := New(ctl, opts)
	s.Publish(testSnapshot())
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ctl, ts
}

func do(t *testing.T, ts *httptest.Server, method, path, contentType string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestStateIsThePublishedSnapshot(t *testing.T) {
	t.Parallel()
	_, _, ts := newTestServer(t, Options{})
	asked := time.Now()
	code, body, h := do(t, ts, "GET", "/api/state", "", nil)
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/state: %d %s %q", code, h.Get("Content-Type"), body)
	}
	var got Snapshot
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	// Now is when the server sent it (published earlier), so pages tick from a fresh clock.
	if got.Now.Before(asked) {
		t.Errorf("now %v is before the request (%v): stamped at Publish, not when sent", got.Now, asked)
	}
	got.Now = time.Time{}
	want := testSnapshot()
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("state:\n got %s\nwant %s", gb, wb)
	}
	// The JSON names are the contract the page's script reads.
	for _, key := range []string{`"failed_phase":"verify"`, `"record_id":"rec-2"`, `"duts_per_hour":41.5`, `"signatures_left":997`, `"recent":[{"id":"rec-2"`} {
		if !strings.Contains(body, key) {
			t.Errorf("state lacks %s: %s", key, body)
		}
	}
}

func TestBeforeFirstPublishStateIsEmpty(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(New(&fakeControl{}, Options{}).Handler())
	defer ts.Close()
	code, body, _ := do(t, ts, "GET", "/api/state", "", nil)
	if code != 200 || !strings.Contains(body, `"slots":[]`) || !strings.Contains(body, `"recent":[]`) {
		t.Fatalf("GET /api/state before Publish: %d %s", code, body)
	}
}

func TestPageAndAssetsServed(t *testing.T) {
	t.Parallel()
	_, _, ts := newTestServer(t, Options{})
	for path, want := range map[string]string{
		"/":               "text/html",
		"/static/app.js":  "text/javascript",
		"/static/app.css": "text/css",
	} {
		code, body, h := do(t, ts, "GET", path, "", nil)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), want) || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes)", path, code, h.Get("Content-Type"), len(body))
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: security headers missing: %v", path, h)
		}
	}
	// Nothing on the page comes from another host.
	for _, f := range []string{"static/index.html", "static/app.js", "static/app.css"} {
		b, _ := staticFiles.ReadFile(f)
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s refers to %q: the page must fetch nothing from elsewhere", f, bad)
			}
		}
	}
}

func TestSlotActionsReachControl(t *testing.T) {
	t.Parallel()
	_, ctl, ts := newTestServer(t, Options{})
	for _, a := range []string{"stop", "start"} {
		if code, body, _ := do(t, ts, "POST", "/api/slots/B/"+a, "", nil); code != http.StatusNoContent {
			t.Fatalf("POST %s: %d %q", a, code, body)
		}
	}
	if code, body, _ := do(t, ts, "POST", "/api/operator", "application/json", strings.NewReader(`{"operator":"op-8"}`)); code != http.StatusNoContent {
		t.Fatalf("POST /api/operator: %d %q", code, body)
	}
	if got, want := strings.Join(ctl.Calls(), ","), "stop B,start B,operator op-8"; got != want {
		t.Fatalf("Control got %q, want %q", got, want)
	}
}

func TestRecordAndTranscript(t *testing.T) {
	t.Parallel()
	_, _, ts := newTestServer(t, Options{})
	code, body, h := do(t, ts, "GET", "/records/rec-2", "", nil)
	if code != 200 || body != `{"id":"rec-2"}` || h.Get("Content-Type") != "application/json" {
		t.Fatalf("record: %d %q %q", code, h.Get("Content-Type"), body)
	}
	code, body, h = do(t, ts, "GET", "/records/rec-2/transcript", "", nil)
	if code != 200 || body != `transcript of {"id":"rec-2"}` || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("transcript: %d %q %q", code, h.Get("Content-Type"), body)
	}
}

// TestBadRequestsChangeNothing: each refused request gets its 4xx and a line saying why, and
// neither the station (Control) nor the page's state sees it.
func TestBadRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	s, ctl, ts := newTestServer(t, Options{})
	before, version := s.latest()
	big := `{"operator":"` + strings.Repeat("a", MaxBody) + `"}`
	for _, c := range []struct {
		method, path, ctype, body string
		code                      int
		says                      string
	}{
		{"POST", "/api/slots/Z/stop", "", "", 404, `unknown slot "Z" (the station's slots: A, B)`},
		{"POST", "/api/slots/A/explode", "", "", 404, `unknown action "explode"`},
		{"GET", "/api/slots/A/stop", "", "", 405, "use POST"},
		{"PUT", "/api/slots/A/start", "", "", 405, "use POST"},
		{"DELETE", "/api/state", "", "", 405, "use GET"},
		{"POST", "/api/events", "", "", 405, "use GET"},
		{"GET", "/api/operator", "", "", 405, "use POST"},
		{"POST", "/api/slots/A/stop", "", strings.Repeat("x", MaxBody+1), 413, "larger than 4096 bytes"},
		{"POST", "/api/operator", "application/json", big, 413, "larger than 4096 bytes"},
		{"POST", "/api/operator", "text/plain", `{"operator":"op-9"}`, 415, "Content-Type application/json"},
		{"POST", "/api/operator", "application/json", `op-9`, 400, "not {\"operator\":\"ID\"}"},
		{"POST", "/api/operator", "application/json", `{"operator":"op-9","admin":true}`, 400, `unknown field "admin"`},
		{"POST", "/api/operator", "application/json", `{"operator":"op-9"}{"operator":"op-10"}`, 400, "more than one JSON value"},
		{"POST", "/api/operator", "application/json", `{"operator":""}`, 400, "operator id is empty"},
		{"POST", "/api/operator", "application/json", `{"operator":"op 9"}`, 400, `operator id "op 9": only letters`},
		{"POST", "/api/operator", "application/json", `{"operator":"<script>"}`, 400, "only letters"},
		{"POST", "/api/operator", "application/json", `{"operator":"-op"}`, 400, "starting with a letter or digit"},
		{"POST", "/api/operator", "application/json", `{"operator":"` + strings.Repeat("a", 33) + `"}`, 400, "33 characters long, at most 32"},
		{"GET", "/records/nope", "", "", 404, `no record for record "nope"`},
		{"GET", "/records/nope/transcript", "", "", 404, `no transcript for record "nope"`},
		{"GET", "/records/..%2Fetc%2Fpasswd", "", "", 400, "only letters"},
		{"GET", "/records/a..b", "", "", 400, "only letters"},
		{"GET", "/records/" + strings.Repeat("r", 129), "", "", 400, "129 characters long"},
		{"POST", "/records/rec-2", "", "", 405, "use GET"},
		{"GET", "/nowhere", "", "", 404, "no such page: /nowhere"},
		{"GET", "/static/", "", "", 404, "no such page: /static/"},
	} {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		code, got, _ := do(t, ts, c.method, c.path, c.ctype, body)
		if code != c.code || !strings.Contains(got, c.says) {
			t.Errorf("%s %s: %d %q, want %d saying %q", c.method, c.path, code, got, c.code, c.says)
		}
	}
	if calls := ctl.Calls(); len(calls) != 0 {
		t.Errorf("refused requests reached the station: %q", calls)
	}
	if after, v := s.latest(); !bytes.Equal(after, before) || v != version {
		t.Errorf("state changed:\n%s\n%s", before, after)
	}
}

func TestControlErrorsAre4xx(t *testing.T) {
	t.Parallel()
	s, ctl, ts := newTestServer(t, Options{})
	ctl.slotErr = errors.New("slot A is already stopped")
	code, body, _ := do(t, ts, "POST", "/api/slots/A/stop", "", nil)
	if code != http.StatusConflict || !strings.Contains(body, "slot A is already stopped") {
		t.Fatalf("Control's refusal: %d %q", code, body)
	}
	ctl.slotErr = fmt.Errorf("slot gone: %w", fs.ErrNotExist)
	if code, body, _ := do(t, ts, "POST", "/api/slots/A/start", "", nil); code != http.StatusNotFound {
		t.Fatalf("Control's not-exist: %d %q", code, body)
	}
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	ctl.readErr = errors.New("disk on fire")
	code, body, _ = do(t, ts, "GET", "/records/rec-2", "", nil)
	if code != 500 || strings.Contains(body, "disk on fire") || !strings.Contains(logs.String(), "disk on fire") {
		t.Fatalf("a failing read: %d %q, log %q", code, body, logs.String())
	}
}

func TestCrossSitePostRefused(t *testing.T) {
	t.Parallel()
	_, ctl, ts := newTestServer(t, Options{})
	req, _ := http.NewRequest("POST", ts.URL+"/api/slots/A/stop", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(ctl.Calls()) != 0 {
		t.Fatalf("cross-site POST: %d, calls %q", resp.StatusCode, ctl.Calls())
	}
}

func TestLoopbackOnlyHostNames(t *testing.T) {
	t.Parallel()
	_, _, ts := newTestServer(t, Options{})
	req, _ := http.NewRequest("GET", ts.URL+"/api/state", nil)
	req.Host = "attacker.example:8080" // a rebound DNS name pointing at 127.0.0.1
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "loopback only") {
		t.Fatalf("foreign Host: %d %q", resp.StatusCode, b)
	}
	for _, h := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost"} {
		if !loopbackHost(h) {
			t.Errorf("loopbackHost(%q) = false", h)
		}
	}
	for _, h := range []string{"0.0.0.0:8080", ":8080", "10.0.0.5:80", "localhost.example:80"} {
		if loopbackHost(h) {
			t.Errorf("loopbackHost(%q) = true", h)
		}
	}
}

func TestTokenRequired(t *testing.T) {
	t.Parallel()
	token := NewToken()
	var logs bytes.Buffer
	_, ctl, ts := newTestServer(t, Options{Token: token, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	client := ts.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(path string, set func(*http.Request)) *http.Response {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		if set != nil {
			set(req)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := get("/api/state", nil); r.StatusCode != 401 {
		t.Errorf("no token: %d", r.StatusCode)
	}
	if r := get("/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token+"x") }); r.StatusCode != 401 {
		t.Errorf("wrong bearer token: %d", r.StatusCode)
	}
	if r := get("/api/state", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: TokenCookie, Value: "guess"}) }); r.StatusCode != 401 {
		t.Errorf("wrong cookie: %d", r.StatusCode)
	}
	if r := get("/?token=guess", nil); r.StatusCode != 401 || len(r.Cookies()) != 0 {
		t.Errorf("wrong ?token=: %d, cookies %v", r.StatusCode, r.Cookies())
	}
	if r := get("/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); r.StatusCode != 200 {
		t.Errorf("bearer token: %d", r.StatusCode)
	}
	// A visit with ?token= sets the cookie and sends the browser to the address without it.
	r := get("/?token="+token+"&x=1", nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/?x=1" {
		t.Fatalf("?token= visit: %d, Location %q", r.StatusCode, r.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == TokenCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("?token= visit set %v", r.Cookies())
	}
	if r := get("/api/state", func(r *http.Request) { r.AddCookie(cookie) }); r.StatusCode != 200 {
		t.Errorf("token cookie: %d", r.StatusCode)
	}
	// POST with the cookie works; without it nothing reaches the station.
	req, _ := http.NewRequest("POST", ts.URL+"/api/slots/A/stop", nil)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("POST without token: %v %v", resp, err)
	}
	req, _ = http.NewRequest("POST", ts.URL+"/api/slots/A/stop", nil)
	req.AddCookie(cookie)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("POST with token: %v %v", resp, err)
	}
	if got := ctl.Calls(); len(got) != 1 || got[0] != "stop A" {
		t.Fatalf("calls %q", got)
	}
	// With a token, any Host is admitted (the station is on a network on purpose).
	if r := get("/api/state", func(r *http.Request) { r.Host = "station-7.factory:8080"; r.AddCookie(cookie) }); r.StatusCode != 200 {
		t.Errorf("network Host with token: %d", r.StatusCode)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token reached the log: %s", logs.String())
	}
}

func TestListenRefusesNetworkWithoutToken(t *testing.T) {
	t.Parallel()
	s := New(&fakeControl{}, Options{})
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		if ln, err := s.Listen(addr); err == nil || !strings.Contains(err.Error(), "needs a token") {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("Listen(%q) without token: %v", addr, err)
		}
	}
	if _, err := s.Listen("no-port"); err == nil || !strings.Contains(err.Error(), "want HOST:PORT") {
		t.Errorf("Listen without port: %v", err)
	}
	short := New(&fakeControl{}, Options{Token: "short"})
	if _, err := short.Listen("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "at least 16") || strings.Contains(err.Error(), "short\"") {
		t.Errorf("Listen with a short token: %v", err)
	}
	ln, err := New(&fakeControl{}, Options{Token: NewToken()}).Listen("0.0.0.0:0")
	if err != nil {
		t.Fatalf("Listen on the network with a token: %v", err)
	}
	ln.Close()
	ln, err = s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen on loopback: %v", err)
	}
	ln.Close()
}

func TestListenNamesThePortsHolder(t *testing.T) {
	t.Parallel()
	s := New(&fakeControl{}, Options{})
	first, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = s.Listen(first.Addr().String())
	if err == nil {
		t.Fatal("a second Listen on a held port succeeded")
	}
	want := fmt.Sprintf("is in use by pid %d (", os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("second Listen: %v, want it to say %q", err, want)
	}
}

// readEvent reads one server-sent event's data (skipping comments and retry lines).
func readEvent(t *testing.T, r *bufio.Reader) (event, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the event stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func openEvents(t *testing.T, ctx context.Context, ts *httptest.Server) (*bufio.Reader, func()) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/events", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
}

func TestEventsDeliverPublishedSnapshots(t *testing.T) {
	t.Parallel()
	s, _, ts := newTestServer(t, Options{})
	events, closeEvents := openEvents(t, t.Context(), ts)
	defer closeEvents()
	ev, data := readEvent(t, events)
	var got Snapshot
	if err := json.Unmarshal([]byte(data), &got); ev != "snapshot" || err != nil || got.Station != "line-1" {
		t.Fatalf("first event %q %q: %v", ev, data, err)
	}
	// Each snapshot published after the previous one was read arrives.
	for i := range 5 {
		snap := testSnapshot()
		snap.Slots[0].Phase = fmt.Sprintf("phase-%d", i)
		s.Publish(snap)
		_, data := readEvent(t, events)
		if err := json.Unmarshal([]byte(data), &got); err != nil || got.Slots[0].Phase != snap.Slots[0].Phase {
			t.Fatalf("event %d: %q (%v), want phase %s", i, data, err, snap.Slots[0].Phase)
		}
	}
	// Published faster than read: the reader may skip some, never reorders, ends on the last.
	for i := range 100 {
		snap := testSnapshot()
		snap.Counters.Passed = i
		s.Publish(snap)
	}
	last := -1
	for last != 99 {
		_, data := readEvent(t, events)
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			t.Fatal(err)
		}
		if got.Counters.Passed <= last {
			t.Fatalf("snapshot %d after %d", got.Counters.Passed, last)
		}
		last = got.Counters.Passed
	}
}

// TestSlowClientDoesNotBlockPublish: a client that never reads its event stream holds no
// Publish up, and is dropped once a write to it has waited WriteTimeout.
func TestSlowClientDoesNotBlockPublish(t *testing.T) {
	t.Parallel()
	s, _, ts := newTestServer(t, Options{WriteTimeout: 200 * time.Millisecond})
	// A snapshot far larger than the socket buffers, so writing it to a non-reader blocks.
	huge := testSnapshot()
	huge.Slots[1].Message = strings.Repeat("x", 32<<20)
	s.Publish(huge)

	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: %s\r\n\r\n", ts.Listener.Addr())
	// (never read from conn)
	waitFor(t, "the slow client's stream to open", func() bool { return s.clients() == 1 })

	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range 10000 {
			snap := testSnapshot()
			snap.Counters.Passed = i
			s.Publish(snap)
		}
	}()
	select {
	case <-published:
	case <-time.After(time.Minute):
		t.Fatal("Publish blocked behind a client that does not read")
	}
	// A reading client gets the latest snapshot meanwhile.
	events, closeEvents := openEvents(t, t.Context(), ts)
	defer closeEvents()
	_, data := readEvent(t, events)
	var got Snapshot
	if err := json.Unmarshal([]byte(data), &got); err != nil || got.Counters.Passed != 9999 {
		t.Fatalf("a reading client got passed=%d (%v), want the latest (9999)", got.Counters.Passed, err)
	}
	waitFor(t, "the slow client to be dropped", func() bool { return s.clients() == 1 })
}

func TestHeadEventsReturns(t *testing.T) {
	t.Parallel()
	s, _, ts := newTestServer(t, Options{})
	code, _, h := do(t, ts, "HEAD", "/api/events", "", nil)
	if code != 200 || h.Get("Content-Type") != "text/event-stream" || s.clients() != 0 {
		t.Fatalf("HEAD /api/events: %d %q, %d streams open", code, h.Get("Content-Type"), s.clients())
	}
}

func TestTooManyStreams(t *testing.T) {
	t.Parallel()
	s, _, ts := newTestServer(t, Options{MaxClients: 1})
	_, closeEvents := openEvents(t, t.Context(), ts)
	waitFor(t, "the first stream", func() bool { return s.clients() == 1 })
	code, body, _ := do(t, ts, "GET", "/api/events", "", nil)
	if code != 503 || !strings.Contains(body, "too many open event streams") {
		t.Fatalf("second stream: %d %q", code, body)
	}
	closeEvents()
	waitFor(t, "the first stream to close", func() bool { return s.clients() == 0 })
}

func TestCloseEndsStreams(t *testing.T) {
	t.Parallel()
	ctl := &fakeControl{}
	s := New(ctl, Options{})
	ts := httptest.NewServer(s.Handler())
	events, closeEvents := openEvents(t, t.Context(), ts)
	defer closeEvents()
	readEvent(t, events)
	s.Close()
	if _, err := io.ReadAll(events); err != nil {
		t.Fatalf("the event stream did not end cleanly: %v", err)
	}
	code, body, _ := do(t, ts, "GET", "/api/events", "", nil)
	if code != 503 || !strings.Contains(body, "shutting down") {
		t.Fatalf("a stream after Close: %d %q", code, body)
	}
	if code, _, _ := do(t, ts, "GET", "/api/state", "", nil); code != 200 {
		t.Fatalf("state after Close: %d", code)
	}
	ts.Close() // returns: no handler left waiting
}

func TestServeEndsWithItsContext(t *testing.T) {
	t.Parallel()
	s := New(&fakeControl{}, Options{})
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	readEvent(t, events)
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if _, err := io.ReadAll(events); err != nil {
		t.Fatalf("the event stream did not end cleanly: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("still listening after Serve returned")
	}
}

// waitFor polls cond (a state the server reaches by itself) until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// BenchmarkPublish: the station's cost of one change with 32 slots, 20 recent records and
// idle event streams open.
func BenchmarkPublish(b *testing.B) {
	for _, streams := range []int{0, 8} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			s := New(&fakeControl{}, Options{})
			for range streams {
				s.subs[&subscriber{wake: make(chan struct{}, 1)}] = struct{}{}
			}
			snap := testSnapshot()
			snap.Slots = nil
			for i := range 32 {
				snap.Slots = append(snap.Slots, SlotState{Name: fmt.Sprintf("slot-%02d", i), State: StateRunning, DUT: fmt.Sprintf("SN-%06d", i), Phase: "provision", Started: time.Now()})
			}
			for i := range 20 {
				snap.Recent = append(snap.Recent, RecordLink{ID: fmt.Sprintf("rec-%d", i), DUT: "SN", Slot: "slot-01", Outcome: "PASS", Ended: time.Now()})
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Publish(snap)
			}
		})
	}
}

// BenchmarkEventsFanout: one Publish of a 32-slot snapshot until each of 16 pages (event
// streams over real HTTP) has read it.
func BenchmarkEventsFanout(b *testing.B) {
	const pages = 16
	s := New(&fakeControl{}, Options{MaxClients: pages})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	defer s.Close()
	snap := testSnapshot()
	snap.Slots = nil
	for i := range 32 {
		snap.Slots = append(snap.Slots, SlotState{Name: fmt.Sprintf("slot-%02d", i), State: StateRunning, DUT: fmt.Sprintf("SN-%06d", i), Phase: "provision", Started: time.Now()})
	}
	got := make([]chan uint64, pages) // each page's event ids, as read
	for i := range got {
		got[i] = make(chan uint64, 1024)
		resp, err := ts.Client().Get(ts.URL + "/api/events")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		go func(r *bufio.Reader, ids chan<- uint64) {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				var id uint64
				if _, err := fmt.Sscanf(line, "id: %d", &id); err == nil {
					ids <- id
				}
			}
		}(bufio.NewReader(resp.Body), got[i])
	}
	waitFor(b, "the streams", func() bool { return s.clients() == pages })
	b.ResetTimer()
	for b.Loop() {
		s.Publish(snap)
		_, v := s.latest()
		for _, ids := range got {
			for id := range ids {
				if id >= v {
					break
				}
			}
		}
	}
}

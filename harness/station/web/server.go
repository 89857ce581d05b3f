package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:embed static
var staticFiles embed.FS

// Defaults of Options.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxClients   = 32
	// MaxBody is the largest request body the API reads; a larger one is refused (413).
	MaxBody = 4 << 10
)

// Options configure a Server. The zero value serves on loopback without a token.
type Options struct {
	// Token, when set, is required on every request: the header "Authorization: Bearer TOKEN",
	// or the cookie a visit to any page with ?token=TOKEN sets. Serve and Listen refuse an
	// address other than loopback without one. Never logged.
	Token string
	// Log receives the page's actions (stop, start, operator) and the station's errors;
	// nil discards them.
	Log *slog.Logger
	// Heartbeat is how often an idle event stream gets a comment line, so a dead client is
	// found and proxies keep the stream open (DefaultHeartbeat when zero).
	Heartbeat time.Duration
	// WriteTimeout bounds writing one event to a client; a client that does not read that long
	// is dropped (DefaultWriteTimeout when zero).
	WriteTimeout time.Duration
	// MaxClients bounds the open event streams (DefaultMaxClients when zero); one more gets 503.
	MaxClients int
}

// Server serves the operator page and its API. The station calls Publish on every change; the
// page's requests reach the station through Control.
type Server struct {
	ctl  Control
	opts Options
	log  *slog.Logger

	pubMu sync.Mutex // serializes Publish

	mu      sync.Mutex
	version uint64 // bumped by every Publish
	encoded []byte // the latest snapshot as JSON
	slots   map[string]bool
	subs    map[*subscriber]struct{}
	closed  chan struct{} // closed by Close: event streams end, new ones are refused
	close   sync.Once
}

// subscriber is one open event stream. wake holds at most one pending signal, so Publish
// never blocks on it and a slow stream skips straight to the latest snapshot.
type subscriber struct {
	wake chan struct{}
}

// New returns a server for ctl. Until the first Publish it serves an empty snapshot.
func New(ctl Control, opts Options) *Server {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ctl: ctl, opts: opts, log: log, subs: map[*subscriber]struct{}{}, closed: make(chan struct{})}
	s.Publish(Snapshot{})
	return s
}

// Publish makes snap the page's state and wakes every event stream. It never waits for a
// client: a stream still writing an earlier snapshot sends only the latest one next. The
// snapshot is encoded here, so the caller may reuse its slices afterwards.
//
// The last call wins: a station publishing from several goroutines must take each snapshot
// and publish it under one lock, or an older snapshot can land after a newer one and stay on
// the page until the next change.
func (s *Server) Publish(snap Snapshot) {
	s.pubMu.Lock() // calls land in the order they were made
	defer s.pubMu.Unlock()
	snap.Now = time.Time{} // stamped when sent (withNow)
	if snap.Slots == nil {
		snap.Slots = []SlotState{}
	}
	if snap.Recent == nil {
		snap.Recent = []RecordLink{}
	}
	b, err := json.Marshal(snap)
	if err != nil { // only strings, numbers and times: cannot happen, but never publish half
		s.log.Error("station page: snapshot not published", "err", err)
		return
	}
	slots := make(map[string]bool, len(snap.Slots))
	for _, sl := range snap.Slots {
		slots[sl.Name] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.encoded = b
	s.slots = slots
	for sub := range s.subs {
		select {
		case sub.wake <- struct{}{}:
		default: // already woken: it will read the latest snapshot anyway
		}
	}
}

// Close ends every event stream and refuses new ones (503); the rest of the page keeps
// working. An http.Server's Shutdown, and httptest.Server's Close, wait for handlers to
// return, and an event stream returns only when its client leaves, its context ends or Close
// is called: call Close first. (Serve's streams also end with its context.)
func (s *Server) Close() {
	s.close.Do(func() { close(s.closed) })
}

// withNow returns the snapshot's JSON (encoded without "now") with "now" set to the server's
// clock, appended to dst.
func withNow(dst, encoded []byte) []byte {
	dst = append(dst, encoded[:len(encoded)-1]...) // without the closing brace
	dst = append(dst, `,"now":"`...)
	dst = time.Now().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`...)
}

// latest returns the last published snapshot's JSON and its version.
func (s *Server) latest() ([]byte, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.encoded, s.version
}

// Handler returns the page and API:
//
//	GET  /                          the page
//	GET  /static/...                its style sheet and script
//	GET  /api/state                 the latest Snapshot as JSON
//	GET  /api/events                server-sent events: "snapshot" events, each a Snapshot
//	POST /api/slots/{name}/stop     Control.StopSlot
//	POST /api/slots/{name}/start    Control.StartSlot
//	POST /api/operator              Control.SetOperator; body {"operator":"ID"}
//	GET  /records/{id}              the test record (JSON)
//	GET  /records/{id}/transcript   the DUT's transcript (text)
//
// Refused requests get a 4xx status and a plain-text line saying why; nothing changes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", s.get(s.serveIndex))
	files := http.FileServerFS(staticFiles)
	mux.HandleFunc("/static/", s.get(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			httpError(w, http.StatusNotFound, "no such page: %s", r.URL.Path)
			return
		}
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/api/state", s.get(s.serveState))
	mux.HandleFunc("/api/events", s.get(s.serveEvents))
	mux.HandleFunc("/api/slots/{name}/{action}", s.post(s.serveSlot))
	mux.HandleFunc("/api/operator", s.post(s.serveOperator))
	mux.HandleFunc("/records/{id}", s.get(s.serveRecord))
	mux.HandleFunc("/records/{id}/transcript", s.get(s.serveTranscript))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusNotFound, "no such page: %s", r.URL.Path)
	})

	// Same-origin POSTs only: another site open in the operator's browser cannot stop slots.
	cop := http.NewCrossOriginProtection()
	var h http.Handler = cop.Handler(mux)
	h = s.authorize(h)
	return securityHeaders(h)
}

// securityHeaders keeps the page's own files the only code it runs and stops browsers from
// guessing a transcript is HTML.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// httpError writes a plain-text refusal.
func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

// get admits GET and HEAD only.
func (s *Server) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, "%s %s: method not allowed, use GET", r.Method, r.URL.Path)
			return
		}
		h(w, r)
	}
}

// post admits POST only, with a body of at most MaxBody bytes, read whole before the handler
// runs so a refused body changes nothing.
func (s *Server) post(h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			httpError(w, http.StatusMethodNotAllowed, "%s %s: method not allowed, use POST", r.Method, r.URL.Path)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				httpError(w, http.StatusRequestEntityTooLarge, "%s: request body larger than %d bytes", r.URL.Path, MaxBody)
				return
			}
			httpError(w, http.StatusBadRequest, "%s: reading the request body: %v", r.URL.Path, err)
			return
		}
		h(w, r, body)
	}
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := staticFiles.ReadFile("static/index.html")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "page missing from the binary: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

func (s *Server) serveState(w http.ResponseWriter, r *http.Request) {
	b, _ := s.latest()
	w.Header().Set("Content-Type", "application/json")
	w.Write(withNow(nil, b))
}

// serveEvents streams snapshots: the current one at once, then the latest after every
// Publish. A client that does not read within WriteTimeout is dropped.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead { // the headers only: a HEAD must not hold a stream open
		w.Header().Set("Content-Type", "text/event-stream")
		return
	}
	sub := &subscriber{wake: make(chan struct{}, 1)}
	select {
	case <-s.closed:
		httpError(w, http.StatusServiceUnavailable, "the station is shutting down")
		return
	default:
	}
	s.mu.Lock()
	if len(s.subs) >= s.opts.MaxClients {
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "too many open event streams (%d); close another page", s.opts.MaxClients)
		return
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// write sends one chunk within WriteTimeout; false means the client is gone or too slow.
	write := func(chunk []byte) bool {
		err := rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// Reconnecting browsers come back within a second, not EventSource's default 3.
	if !write([]byte("retry: 1000\n\n")) {
		return
	}
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	var sent uint64
	for {
		if b, v := s.latest(); v != sent {
			sent = v
			ev := make([]byte, 0, len(b)+48)
			ev = fmt.Appendf(ev, "event: snapshot\nid: %d\ndata: ", v)
			ev = withNow(ev, b) // json.Marshal output holds no newline
			ev = append(ev, "\n\n"...)
			if !write(ev) {
				s.log.Info("station page: event stream dropped", "remote", r.RemoteAddr)
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		case <-sub.wake:
		case <-heartbeat.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		}
	}
}

// serveSlot stops or starts a slot the latest snapshot names.
func (s *Server) serveSlot(w http.ResponseWriter, r *http.Request, _ []byte) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var do func(string) error
	switch action {
	case "stop":
		do = s.ctl.StopSlot
	case "start":
		do = s.ctl.StartSlot
	default:
		httpError(w, http.StatusNotFound, "slot %q: unknown action %q (stop or start)", name, action)
		return
	}
	s.mu.Lock()
	known := s.slots[name]
	names := make([]string, 0, len(s.slots))
	for n := range s.slots {
		names = append(names, n)
	}
	s.mu.Unlock()
	if !known {
		sort.Strings(names)
		httpError(w, http.StatusNotFound, "unknown slot %q (the station's slots: %s)", name, strings.Join(names, ", "))
		return
	}
	if err := do(name); err != nil {
		code := http.StatusConflict
		if errors.Is(err, fs.ErrNotExist) {
			code = http.StatusNotFound
		}
		httpError(w, code, "%s slot %q: %v", action, name, err)
		return
	}
	s.log.Info("station page: slot "+action, "slot", name, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// decodeOperator reads POST /api/operator's body, {"operator":"ID"}: one JSON object whose only
// key is "operator", spelled so (encoding/json alone would take "Operator" too), holding a string.
func decodeOperator(body []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		return "", err
	}
	// Only white space may follow: the next token must be the end. (Decoder.More does not see a
	// stray '}' there.)
	if _, err := dec.Token(); err != io.EOF {
		return "", errors.New("more than one JSON value, or text after the object")
	}
	raw, ok := m["operator"]
	if !ok {
		return "", errors.New(`no "operator" key`)
	}
	for k := range m {
		if k != "operator" {
			return "", fmt.Errorf("unknown field %q", k)
		}
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		return "", fmt.Errorf(`"operator" is not a string`)
	}
	return id, nil
}

func (s *Server) serveOperator(w http.ResponseWriter, r *http.Request, body []byte) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, "operator: send JSON {\"operator\":\"ID\"} with Content-Type application/json (got %q)", r.Header.Get("Content-Type"))
		return
	}
	id, err := decodeOperator(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "operator: body is not {\"operator\":\"ID\"}: %v", err)
		return
	}
	if err := ValidOperator(id); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err := s.ctl.SetOperator(id); err != nil {
		httpError(w, http.StatusBadRequest, "operator: %v", err)
		return
	}
	s.log.Info("station page: operator set", "operator", id, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

var (
	operatorRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	recordRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
)

// MaxOperatorLen and MaxRecordIDLen bound the ids the page accepts.
const (
	MaxOperatorLen = 32
	MaxRecordIDLen = 128
)

// ValidOperator says whether id may name an operator: 1 to 32 characters, letters, digits,
// '.', '_' and '-', starting with a letter or digit (a badge number or a login fits; a space,
// a quote or markup does not, so the id is safe in records, CSV and logs).
func ValidOperator(id string) error {
	switch {
	case id == "":
		return errors.New("operator id is empty")
	case len(id) > MaxOperatorLen:
		return fmt.Errorf("operator id is %d characters long, at most %d", len(id), MaxOperatorLen)
	case !operatorRE.MatchString(id):
		return fmt.Errorf("operator id %q: only letters, digits, '.', '_' and '-', starting with a letter or digit", id)
	}
	return nil
}

// ValidRecordID says whether id may name a test record in a URL: 1 to 128 characters,
// letters, digits, '.', '_', ':' and '-', starting with a letter or digit (no '/', no "..":
// a Control may map it to a file name).
func ValidRecordID(id string) error {
	switch {
	case id == "":
		return errors.New("record id is empty")
	case len(id) > MaxRecordIDLen:
		return fmt.Errorf("record id is %d characters long, at most %d", len(id), MaxRecordIDLen)
	case !recordRE.MatchString(id) || strings.Contains(id, ".."):
		return fmt.Errorf("record id %q: only letters, digits, '.', '_', ':' and '-', starting with a letter or digit", id)
	}
	return nil
}

func (s *Server) serveRecord(w http.ResponseWriter, r *http.Request) {
	s.serveFile(w, r, "record", s.ctl.Record, "application/json")
}

func (s *Server) serveTranscript(w http.ResponseWriter, r *http.Request) {
	s.serveFile(w, r, "transcript", s.ctl.Transcript, "text/plain; charset=utf-8")
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, what string, read func(string) ([]byte, error), contentType string) {
	id := r.PathValue("id")
	if err := ValidRecordID(id); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	b, err := read(id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		httpError(w, http.StatusNotFound, "no %s for record %q", what, id)
		return
	case err != nil:
		s.log.Error("station page: reading a "+what, "record", id, "err", err)
		httpError(w, http.StatusInternalServerError, "reading the %s of record %q failed (the station's log says why)", what, id)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Write(b)
}

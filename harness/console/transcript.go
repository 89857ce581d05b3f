package console

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Direction says which way recorded bytes went.
type Direction byte

const (
	Received Direction = '<' // from the device
	Sent     Direction = '>' // to the device
)

// TimeFormat is the timestamp of every transcript record (UTC).
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Transcript defaults: how long a partial line may wait for its end before
// it is written anyway, and how much of one line is held at most.
const (
	defaultFlushDelay = 100 * time.Millisecond
	maxHeld           = 4096
)

// Transcript records every byte exchanged with one or more consoles, one
// record per line of text:
//
//	# hilbench console transcript; started 2026-05-01T10:00:00.000000Z
//	2026-05-01T10:00:00.001200Z dut1 > "echo hi\n"
//	2026-05-01T10:00:00.003400Z dut1 < "echo hi\r\n"
//	2026-05-01T10:00:00.003400Z dut1 < "hi\r\n"
//	2026-05-01T10:00:00.003400Z dut1 < "hil$ \x1b[6n"
//	2026-05-01T10:00:00.100000Z # step: sign
//
// Bytes are Go-quoted (%q) so control characters and escape sequences stay
// visible; unquoting and concatenating one source's records of one
// direction gives back exactly what went over the line (secrets aside).
//
// Redaction across reads: each source and direction has a buffer. Bytes are
// written when their line ends, when the buffer passes 4 KiB, when the
// flush delay passes, or when another stream records (to keep the file in
// time order). Every flush cuts with safeCut: it never splits a secret, nor
// writes a tail that could be the start of one, so a secret arriving in
// two reads is still redacted whole. A tail that could start a secret waits
// for that stream's next bytes (or Close), so such a record may appear
// after later records of other streams; its timestamp stays the time its
// first byte arrived.
//
// All methods are safe for concurrent use; after Close they do nothing.
type Transcript struct {
	mu         sync.Mutex
	w          io.Writer
	closer     io.Closer
	red        *Redactor
	now        func() time.Time // seam for tests
	flushDelay time.Duration
	streams    []*stream
	timer      *time.Timer
	err        error
	closed     bool
}

type stream struct {
	source string
	dir    Direction
	buf    []byte
	marks  []mark // arrival time of buf's bytes, by offset
}

type mark struct {
	off int
	at  time.Time
}

// NewTranscript writes a transcript to w, redacting r's secrets (r may be
// nil). Pass the same Redactor as the consoles' Options.Redactor.
func NewTranscript(w io.Writer, r *Redactor) *Transcript {
	t := &Transcript{w: w, red: r, now: time.Now, flushDelay: defaultFlushDelay}
	t.writeLine("# hilbench console transcript; started " + t.now().UTC().Format(TimeFormat) +
		`; records: TIME SOURCE DIR "BYTES" (DIR < from device, > to device) or TIME # NOTE`)
	return t
}

// CreateTranscript writes a transcript to the file at path, after what the file holds already: a
// device reopened in the same run (a soak's steps, a reflash) adds a session, with its own
// "started" line, rather than erasing the night's earlier ones. Close closes the file.
func CreateTranscript(path string, r *Redactor) (*Transcript, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("creating transcript: %w", err)
	}
	t := NewTranscript(f, r)
	t.closer = f
	return t, nil
}

// Note writes an annotation such as "step: sign" (redacted).
func (t *Transcript) Note(format string, args ...any) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.flushAll(false)
	text := t.red.Redact(fmt.Sprintf(format, args...))
	if strings.ContainsFunc(text, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		text = strconv.Quote(text)
	}
	t.writeLine(t.now().UTC().Format(TimeFormat) + " # " + text)
}

// Record adds bytes that went over the line. Consoles call it for every read
// and write; other code talking to a device (e.g. a file transfer) may too.
func (t *Transcript) Record(source string, dir Direction, p []byte) {
	if t == nil || len(p) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	now := t.now()
	st := t.stream(source, dir)
	for _, o := range t.streams {
		if o != st {
			t.flush(o, len(o.buf), false) // earlier bytes first
		}
	}
	st.marks = append(st.marks, mark{off: len(st.buf), at: now})
	st.buf = append(st.buf, p...)
	if i := bytes.LastIndexByte(st.buf, '\n'); i >= 0 {
		t.flush(st, i+1, false)
	}
	if len(st.buf) > maxHeld {
		t.flush(st, len(st.buf), false)
	}
	t.arm()
}

// Close writes out everything held and closes the file made by
// CreateTranscript. It returns the first write error.
func (t *Transcript) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.err
	}
	t.flushAll(true)
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.closer != nil {
		if err := t.closer.Close(); err != nil && t.err == nil {
			t.err = fmt.Errorf("closing transcript: %w", err)
		}
	}
	return t.err
}

func (t *Transcript) stream(source string, dir Direction) *stream {
	for _, s := range t.streams {
		if s.source == source && s.dir == dir {
			return s
		}
	}
	s := &stream{source: source, dir: dir}
	t.streams = append(t.streams, s)
	return s
}

// arm schedules a timed flush while anything is held.
func (t *Transcript) arm() {
	if t.timer != nil {
		return
	}
	for _, s := range t.streams {
		if len(s.buf) > 0 {
			t.timer = time.AfterFunc(t.flushDelay, t.onTimer)
			return
		}
	}
}

func (t *Transcript) onTimer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.timer = nil
	if !t.closed {
		// No re-arm: what is still held could be the start of a secret and
		// waits for more bytes or Close.
		t.flushAll(false)
	}
}

func (t *Transcript) flushAll(final bool) {
	for _, s := range t.streams {
		t.flush(s, len(s.buf), final)
	}
}

// flush writes st.buf[:k] (less what safeCut holds back unless final) as
// records, one per line, each stamped with its first byte's arrival.
func (t *Transcript) flush(st *stream, k int, final bool) {
	secrets := t.red.list()
	if !final {
		k = safeCut(st.buf, k, secrets)
	}
	if k == 0 {
		return
	}
	chunk := st.buf[:k]
	// Split at line ends, but never inside a secret (a PEM key spans lines).
	inSecret := secretSpans(chunk, secrets)
	start := 0
	for i := 0; i < len(chunk); i++ {
		if (chunk[i] == '\n' && !inSecret(i)) || i == len(chunk)-1 {
			seg := t.red.Redact(string(chunk[start : i+1]))
			t.writeLine(fmt.Sprintf("%s %s %c %q", st.at(start).UTC().Format(TimeFormat), st.source, st.dir, seg))
			start = i + 1
		}
	}
	st.trim(k)
}

// secretSpans reports whether offset i of b lies inside a secret occurrence.
func secretSpans(b []byte, secrets []string) func(int) bool {
	var spans [][2]int
	for _, s := range secrets {
		for off := 0; ; {
			j := bytes.Index(b[off:], []byte(s))
			if j < 0 {
				break
			}
			spans = append(spans, [2]int{off + j, off + j + len(s)})
			off += j + 1
		}
	}
	return func(i int) bool {
		for _, sp := range spans {
			if i >= sp[0] && i < sp[1]-1 { // a secret's own last byte may end a record
				return true
			}
		}
		return false
	}
}

// at is the arrival time of buf[off].
func (st *stream) at(off int) time.Time {
	var t time.Time
	for _, m := range st.marks {
		if m.off > off {
			break
		}
		t = m.at
	}
	return t
}

// trim drops the first k bytes and re-bases the arrival marks.
func (st *stream) trim(k int) {
	first := st.at(k)
	st.buf = append(st.buf[:0], st.buf[k:]...)
	var marks []mark
	if len(st.buf) > 0 {
		marks = append(marks, mark{off: 0, at: first})
	}
	for _, m := range st.marks {
		if m.off > k {
			marks = append(marks, mark{off: m.off - k, at: m.at})
		}
	}
	st.marks = marks
}

func (t *Transcript) writeLine(s string) {
	if t.err != nil {
		return
	}
	if _, err := io.WriteString(t.w, s+"\n"); err != nil {
		t.err = fmt.Errorf("writing transcript: %w", err)
	}
}

package console

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock advances 1ms per reading.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func newTestTranscript(r *Redactor) (*Transcript, *bytes.Buffer) {
	var buf bytes.Buffer
	tr := NewTranscript(&buf, r)
	tr.now = fakeClock()
	tr.flushDelay = time.Hour // tests flush explicitly
	return tr, &buf
}

var recordRe = regexp.MustCompile(`^(\S+) (\S+) ([<>]) (".*")$`)

type rec struct {
	at     time.Time
	source string
	dir    string
	data   string
}

func parse(t *testing.T, s string) (recs []rec, notes []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "# hilbench console transcript; started ") {
		t.Fatalf("no header: %q", lines[0])
	}
	for _, l := range lines[1:] {
		if ts, note, ok := strings.Cut(l, " # "); ok && !strings.Contains(ts, " ") {
			notes = append(notes, note)
			continue
		}
		m := recordRe.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unparsable record %q", l)
		}
		at, err := time.Parse(TimeFormat, m[1])
		if err != nil {
			t.Fatalf("timestamp %q: %v", m[1], err)
		}
		data, err := strconv.Unquote(m[4])
		if err != nil {
			t.Fatalf("unquote %q: %v", m[4], err)
		}
		recs = append(recs, rec{at, m[2], m[3], data})
	}
	return recs, notes
}

func joined(recs []rec, source, dir string) string {
	var b strings.Builder
	for _, r := range recs {
		if r.source == source && r.dir == dir {
			b.WriteString(r.data)
		}
	}
	return b.String()
}

func TestTranscriptRecordsEveryByte(t *testing.T) {
	tr, buf := newTestTranscript(nil)
	rx := []string{"boot\r\n\x00\xff", "hil$ \x1b[6n", "ec", "ho hi\r\nhi\r\nhil$ "}
	tr.Record("dut1", Received, []byte(rx[0]))
	tr.Record("dut1", Received, []byte(rx[1]))
	tr.Record("dut1", Sent, []byte("echo hi\n"))
	tr.Record("dut1", Received, []byte(rx[2]))
	tr.Record("dut1", Received, []byte(rx[3]))
	tr.Note("step: %s", "sign")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	recs, notes := parse(t, buf.String())
	if got := joined(recs, "dut1", "<"); got != strings.Join(rx, "") {
		t.Errorf("received bytes = %q, want %q", got, strings.Join(rx, ""))
	}
	if got := joined(recs, "dut1", ">"); got != "echo hi\n" {
		t.Errorf("sent bytes = %q", got)
	}
	if len(notes) != 1 || notes[0] != "step: sign" {
		t.Errorf("notes = %q", notes)
	}
	// One record per line, and in time order: the prompt before the command.
	var order []string
	for _, r := range recs {
		order = append(order, r.dir+r.data)
	}
	want := []string{"<boot\r\n", "<\x00\xffhil$ \x1b[6n", ">echo hi\n", "<echo hi\r\n", "<hi\r\n", "<hil$ "}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("records = %q, want %q", order, want)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].at.Before(recs[i-1].at) {
			t.Errorf("record %d (%q) is older than the one before", i, recs[i].data)
		}
	}
	if !strings.Contains(buf.String(), ".001000Z") && !strings.Contains(buf.String(), ".002000Z") {
		t.Errorf("timestamps lack microseconds:\n%s", buf.String())
	}
}

func TestTranscriptRedactsSecretSplitAcrossReads(t *testing.T) {
	const pin = "Zq7Xk2Pm9"
	pem := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBl\n-----END EC PRIVATE KEY-----"
	for split := 1; split < len(pin); split++ {
		tr, buf := newTestTranscript(NewRedactor(pin, pem))
		tr.Record("dut1", Received, []byte("PIN: "+pin[:split]))
		tr.onTimer() // a flush between the two reads must hold the partial PIN
		tr.Record("dut1", Sent, []byte("x"))
		tr.Record("dut1", Received, []byte(pin[split:]+" ok\r\n"))
		tr.Record("dut1", Received, []byte("key:\n"+pem[:40]))
		tr.Record("dut1", Received, []byte(pem[40:]+"\n"))
		tr.Close()
		out := buf.String()
		if strings.Contains(out, pin) || strings.Contains(out, "MHcCAQEEIBl") {
			t.Errorf("split %d leaks:\n%s", split, out)
		}
		recs, _ := parse(t, out)
		if got := joined(recs, "dut1", "<"); got != "PIN: "+Redacted+" ok\r\nkey:\n"+Redacted+"\n" {
			t.Errorf("split %d: received = %q", split, got)
		}
	}
}

func TestTranscriptFlushesOnDelay(t *testing.T) {
	var buf syncBuffer
	tr := NewTranscript(&buf, NewRedactor("secret"))
	tr.flushDelay = time.Millisecond
	tr.Record("dut1", Received, []byte("hil$ "))
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(buf.String(), `"hil$ "`) {
		if time.Now().After(deadline) {
			t.Fatal("prompt never flushed")
		}
		time.Sleep(time.Millisecond)
	}
	tr.Close()
	tr.Record("dut1", Received, []byte("after close"))
	tr.Note("after close")
	if strings.Contains(buf.String(), "after close") {
		t.Error("recorded after Close")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTranscriptConcurrentUse(t *testing.T) {
	var buf syncBuffer
	tr := NewTranscript(&buf, NewRedactor("s3cret"))
	tr.flushDelay = time.Millisecond
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tr.Record(fmt.Sprintf("dut%d", g), Direction("<>"[i%2]), []byte("s3c"))
				tr.Record(fmt.Sprintf("dut%d", g), Direction("<>"[i%2]), []byte("ret\n"))
				if i%50 == 0 {
					tr.Note("g%d i%d", g, i)
				}
			}
		}()
	}
	wg.Wait()
	tr.Close()
	out := buf.String()
	if strings.Contains(out, "s3cret") {
		t.Error("secret leaked under concurrency")
	}
	// Each goroutine owns its two streams, so every "s3c"+"ret" pair joins
	// up whatever the other goroutines flush in between.
	if n := strings.Count(out, Redacted); n != 4*200 {
		t.Errorf("%d redactions, want %d", n, 4*200)
	}
}

func TestCreateTranscript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dut1.transcript")
	tr, err := CreateTranscript(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.Record("dut1", Sent, []byte("id\n"))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `dut1 > "id\n"`) {
		t.Errorf("file = %q, %v", b, err)
	}
	// The device reopened: a second session follows the first.
	tr, err = CreateTranscript(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.Record("dut1", Received, []byte("again\n"))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	first, second := strings.Index(string(b), `dut1 > "id\n"`), strings.Index(string(b), `dut1 < "again\n"`)
	if first < 0 || second < first || strings.Count(string(b), "# hilbench console transcript; started") != 2 {
		t.Errorf("after a second session the file is %q; want both sessions, in order, each with its header", b)
	}
	if _, err := CreateTranscript(filepath.Join(path, "not-a-dir", "x"), nil); err == nil {
		t.Error("CreateTranscript in a missing directory succeeded")
	}
}

func TestRedactor(t *testing.T) {
	var nilR *Redactor
	if nilR.Redact("abc") != "abc" {
		t.Error("nil Redactor changed text")
	}
	nilR.Add("x") // must not panic
	r := NewRedactor("", "1234", "123456")
	r.Add("1234") // repeat ignored
	if got := r.Redact("pin 123456 and 1234 and 12"); got != "pin [REDACTED] and [REDACTED] and 12" {
		t.Errorf("Redact = %q", got)
	}
	if len(r.list()) != 2 {
		t.Errorf("secrets = %q", r.list())
	}
}

func TestSafeCut(t *testing.T) {
	secrets := []string{"SECRET"}
	cases := []struct {
		buf  string
		k    int
		want int
	}{
		{"abc SECRET def", 14, 14}, // whole secret inside: cut stays
		{"abc SECRET def", 7, 4},   // cut inside the secret moves before it
		{"abc SEC", 7, 4},          // could still become the secret
		{"abc SEX", 7, 7},          // cannot
		{"abc S", 5, 4},
		{"SECRET", 3, 0},
	}
	for _, tc := range cases {
		if got := safeCut([]byte(tc.buf), tc.k, secrets); got != tc.want {
			t.Errorf("safeCut(%q, %d) = %d, want %d", tc.buf, tc.k, got, tc.want)
		}
	}
}

package ack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"hilbench/harness/console"
)

// MaxSends is how often one request is sent before the exchange gives up (PROTOCOL.md).
const MaxSends = 8

// A busy module is asked again after BusyPause, doubling up to BusyPauseMax, BusyTries times in
// all: about 7 s of pauses, longer than the module's slowest work (a certificate write at flash speed).
// TransportConfig (Config) may set other pauses.
const (
	BusyTries    = 8
	BusyPause    = 100 * time.Millisecond
	BusyPauseMax = 2 * time.Second
)

// Timeout defaults.
const (
	timeoutMargin      = 300 * time.Millisecond
	DefaultSlowTimeout = 10 * time.Second // KEYGEN, CSR and COMMIT: key and signature work on the module
)

var (
	// ErrModuleRestarted is returned when a BOOT event arrives while a request waits for its answer
	// (or since the last one): the request may be lost, so the caller re-reads the module's state.
	ErrModuleRestarted = errors.New("module restarted (BOOT event)")
	// ErrNoAnswer is returned when a request got no usable answer in MaxSends sends.
	ErrNoAnswer = errors.New("no answer from the module")
	// ErrNotSpeaking is returned when the module answers HELLO with text lines only.
	ErrNotSpeaking = errors.New("module does not speak the " + Dialect + " dialect")
	// ErrTransportClosed is returned after Close or when the port's reader stopped.
	ErrTransportClosed = errors.New("transport closed")
)

// ModuleError is an ERR answer: the module refused the request.
type ModuleError struct {
	Verb string
	Code string
	Msg  string
	Text Text // the whole answer, for codes that carry more (code=offset carries next)
}

func (e *ModuleError) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("module refused %s: code=%s", e.Verb, e.Code)
	}
	return fmt.Sprintf("module refused %s: code=%s (%s)", e.Verb, e.Code, e.Msg)
}

// Stats counts what went over the line, for the report.
type Stats struct {
	FramesSent      int // every send, first ones and retransmissions
	Retransmissions int
	NAKs            int // NAKs received
	Damaged         int // damaged frames received
	Timeouts        int // sends that got no answer in time
	BytesSent       int64
	BytesReceived   int64
	Recoveries      int // restarts or silences Provision recovered from
	Busy            int // ERR code=busy answers (each one asked again after a pause)
	Shrinks         int // chunks sent again shorter after the line damaged them too often (also retransmissions)
}

// Transport is stop-and-wait over the module's UART: one request in flight, resent on NAK, damage
// or timeout. It is not for concurrent use by several callers; Module serialises.
type Transport struct {
	w        io.Writer
	name     string
	tr       *console.Transcript
	red      *console.Redactor
	baud     int
	frameTO  time.Duration // 0: from the baud rate
	slowTO   time.Duration
	busyTO   time.Duration // first pause after a busy answer
	busyMax  time.Duration // longest pause
	lines    chan []byte
	done     chan struct{} // Close
	ended    chan struct{} // the reader stopped: readErr says why
	stopOnce sync.Once

	mu      sync.Mutex
	stats   Stats
	readErr error

	seq      byte
	lastText string // last non-frame line, for "does not speak" errors
	// silentAfter > 0 ends an exchange after that many sends met total silence (no frame at
	// all), for callers that can cycle the module's power rather than wait out MaxSends.
	silentAfter int
	boot        Text   // a BOOT seen between exchanges
	suspect     string // the other dialect the last damaged answer named, if any
}

// dialectRepeats is how many answers in a row must name the same other dialect, in frames whose
// integrity cannot be checked, before the exchange calls it a mismatch rather than noise.
const dialectRepeats = 3

// SetSilentAfter makes an exchange give up after n sends met total silence (0: MaxSends).
func (t *Transport) SetSilentAfter(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.silentAfter = n
}

// TransportConfig says how to time a Transport.
type TransportConfig struct {
	Name            string              // source name in the transcript
	Baud            int                 // default 115200
	ExchangeTimeout time.Duration       // answer timeout per send; 0: 2x line time + 300 ms
	SlowTimeout     time.Duration       // for KEYGEN, CSR and COMMIT; default DefaultSlowTimeout
	BusyPause       time.Duration       // first pause after code=busy; default BusyPause
	BusyPauseMax    time.Duration       // the pause doubles up to this; default BusyPauseMax
	Redactor        *console.Redactor   // for lines quoted in errors
	Transcript      *console.Transcript // may be nil
}

// NewTransport starts reading rw. The reader goroutine ends when rw's Read fails (close the
// port) or after Close once its current Read returns; every exchange after that fails with
// ErrTransportClosed.
func NewTransport(rw io.ReadWriter, cfg TransportConfig) *Transport {
	if cfg.Baud <= 0 {
		cfg.Baud = 115200
	}
	if cfg.SlowTimeout <= 0 {
		cfg.SlowTimeout = DefaultSlowTimeout
	}
	if cfg.BusyPause <= 0 {
		cfg.BusyPause = BusyPause
	}
	if cfg.BusyPauseMax <= 0 {
		cfg.BusyPauseMax = BusyPauseMax
	}
	cfg.BusyPauseMax = max(cfg.BusyPauseMax, cfg.BusyPause)
	t := &Transport{
		w: rw, name: cfg.Name, tr: cfg.Transcript, red: cfg.Redactor, baud: cfg.Baud,
		frameTO: cfg.ExchangeTimeout, slowTO: cfg.SlowTimeout, busyTO: cfg.BusyPause, busyMax: cfg.BusyPauseMax,
		lines: make(chan []byte, 256), done: make(chan struct{}), ended: make(chan struct{}),
	}
	go t.read(rw)
	return t
}

// Close stops delivering received lines. It does not close the port.
func (t *Transport) Close() { t.stopOnce.Do(func() { close(t.done) }) }

// Stats returns the counters so far.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

func (t *Transport) count(f func(s *Stats)) {
	t.mu.Lock()
	f(&t.stats)
	t.mu.Unlock()
}

func (t *Transport) read(r io.Reader) {
	buf := make([]byte, 4096)
	var line []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if t.tr != nil {
				t.tr.Record(t.name, console.Received, buf[:n])
			}
			t.count(func(s *Stats) { s.BytesReceived += int64(n) })
			line = append(line, buf[:n]...)
			for {
				i := bytes.IndexByte(line, '\n')
				if i < 0 {
					break
				}
				if !t.deliver(bytes.Clone(line[:i+1])) {
					return
				}
				line = line[i+1:]
			}
			if len(line) > 4*MaxFrameLen { // a runaway log line: keep memory bounded
				line = line[len(line)-MaxFrameLen:]
			}
		}
		if err != nil {
			t.mu.Lock()
			t.readErr = fmt.Errorf("%w: reading the port: %v", ErrTransportClosed, err)
			t.mu.Unlock()
			close(t.ended)
			return
		}
	}
}

func (t *Transport) deliver(line []byte) bool {
	select {
	case t.lines <- line:
		return true
	case <-t.done:
		return false
	}
}

// timeout is the answer timeout for one send of a request frame of n bytes: twice the line time
// of the request and the longest answer at the baud rate (10 bits a byte), plus a margin.
func (t *Transport) timeout(verb string, n int) time.Duration {
	to := t.frameTO
	if to <= 0 {
		bits := int64(n+MaxFrameLen) * 10
		to = 2*time.Duration(bits*int64(time.Second)/int64(t.baud)) + timeoutMargin
	}
	switch verb {
	case "KEYGEN", "CSR", "COMMIT":
		to += t.slowTO
	}
	return to
}

func (t *Transport) nextSeq() byte {
	t.seq++
	if t.seq == eventSeq {
		t.seq++
	}
	return t.seq
}

func (t *Transport) write(p []byte) error {
	if t.tr != nil {
		t.tr.Record(t.name, console.Sent, p)
	}
	if _, err := t.w.Write(p); err != nil {
		return fmt.Errorf("writing to the port: %w", err)
	}
	t.count(func(s *Stats) { s.BytesSent += int64(len(p)); s.FramesSent++ })
	return nil
}

// drain takes what arrived since the last exchange: a BOOT among it is remembered.
func (t *Transport) drain() error {
	for {
		select {
		case line := <-t.lines:
			t.note(line)
		default:
			select {
			case <-t.ended:
				return t.endErr()
			case <-t.done:
				return ErrTransportClosed
			default:
				return nil
			}
		}
	}
}

func (t *Transport) endErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readErr
}

// note looks at a line that arrived outside an exchange.
func (t *Transport) note(line []byte) {
	f, ok, err := ParseLine(line)
	switch {
	case !ok:
		t.lastText = string(bytes.TrimRight(line, "\r\n"))
	case err == nil && f.Seq == eventSeq && f.Verb == "BOOT":
		t.boot, _ = ParseText(f.Payload)
		if t.boot == nil {
			t.boot = Text{}
		}
	}
}

// RestartError is ErrModuleRestarted with what the BOOT event said.
type RestartError struct {
	Verb string // the request it interrupted, "" between requests
	Boot Text   // dsn, fw, state
}

func (e *RestartError) Error() string {
	if e.Verb == "" {
		return fmt.Sprintf("%v before the next request (state %q)", ErrModuleRestarted, e.Boot["state"])
	}
	return fmt.Sprintf("%v while waiting for the answer to %s (state %q)", ErrModuleRestarted, e.Verb, e.Boot["state"])
}
func (e *RestartError) Unwrap() error { return ErrModuleRestarted }

// Exchange sends one request and returns the module's OK answer; an ERR answer is a *ModuleError.
// A BOOT seen since the previous exchange fails it before sending (except for HELLO, which
// re-reads the state anyway), so a restart between requests is never missed.
//
// An ERR code=busy means the module did not carry the request out (PROTOCOL.md): it is sent again
// as a new request (new seq, so the module does not replay its busy answer) after a pause that
// doubles from the busy pause, at most BusyTries times in all; then the busy error is returned.
func (t *Transport) Exchange(ctx context.Context, verb string, payload []byte) (Frame, error) {
	ans, _, err := t.exchangeUpTo(ctx, verb, payload, MaxSends)
	return ans, err
}

// exchangeUpTo is Exchange with at most maxSends sends of a request the module answers but never
// intact (NAKs, damage); silence still gets MaxSends. It also says how many sends the answer took
// (the last request's, when the module was busy before).
func (t *Transport) exchangeUpTo(ctx context.Context, verb string, payload []byte, maxSends int) (Frame, int, error) {
	pause := t.busyTO
	for try := 1; ; try++ {
		ans, sends, err := t.exchange(ctx, verb, payload, maxSends)
		var me *ModuleError
		if !errors.As(err, &me) || me.Code != "busy" {
			return ans, sends, err
		}
		t.count(func(s *Stats) { s.Busy++ })
		if try >= BusyTries {
			return ans, sends, fmt.Errorf("%w; still busy after %d tries over %s", err, try, t.busyWaited(try))
		}
		select {
		case <-ctx.Done():
			return Frame{}, sends, fmt.Errorf("%s: waiting out a busy module: %w", verb, ctx.Err())
		case <-t.done:
			return Frame{}, sends, ErrTransportClosed
		case <-time.After(pause):
		}
		pause = min(2*pause, t.busyMax)
	}
}

// busyWaited is the pause before the try-th send, summed.
func (t *Transport) busyWaited(tries int) time.Duration {
	var d time.Duration
	pause := t.busyTO
	for i := 1; i < tries; i++ {
		d += pause
		pause = min(2*pause, t.busyMax)
	}
	return d
}

func (t *Transport) exchange(ctx context.Context, verb string, payload []byte, maxSends int) (Frame, int, error) {
	if err := t.drain(); err != nil {
		return Frame{}, 0, err
	}
	if t.boot != nil {
		boot := t.boot
		t.boot = nil
		if verb != "HELLO" {
			return Frame{}, 0, &RestartError{Boot: boot}
		}
	}
	req := Frame{Seq: t.nextSeq(), Verb: verb, Payload: payload}
	line, err := req.Encode()
	if err != nil {
		return Frame{}, 0, err
	}
	timeout := t.timeout(verb, len(line))
	var frames, damaged, naks, timeouts int
	var foreign string // the other dialect the unverifiable answers so far named, if all the same
	var foreignN int
	t.lastText = ""
	send := 1
	for ; ; send++ {
		if send > 1 {
			t.count(func(s *Stats) { s.Retransmissions++ })
		}
		if err := t.write(line); err != nil {
			return Frame{}, send, fmt.Errorf("%s: %w", verb, err)
		}
		ans, why, err := t.await(ctx, req, timeout)
		if err != nil || why == "" {
			return ans, send, err
		}
		switch why {
		case "nak":
			naks++
			frames++
		case "damaged":
			damaged++
			frames++
			switch {
			case t.suspect == "":
				foreign, foreignN = "", 0
			case t.suspect == foreign:
				foreignN++
			default:
				foreign, foreignN = t.suspect, 1
			}
			if foreignN >= dialectRepeats {
				return Frame{}, send, fmt.Errorf("%s: %w (in %d answers in a row)", verb, &DialectError{Got: foreign}, foreignN)
			}
		case "timeout":
			timeouts++
		}
		if t.silentAfter > 0 && frames == 0 && timeouts >= t.silentAfter {
			return Frame{}, send, fmt.Errorf("%w to %s: the module stayed silent for %d sends", ErrNoAnswer, verb, timeouts)
		}
		// maxSends bounds a request the module answers, but never intact; silence gets MaxSends.
		if send >= MaxSends || (frames > 0 && send >= maxSends) {
			break
		}
	}
	if verb == "HELLO" && frames == 0 && t.lastText != "" {
		return Frame{}, send, fmt.Errorf("%w: no frame in answer to HELLO after %d sends, only text; last line: %q",
			ErrNotSpeaking, send, t.red.Redact(t.lastText))
	}
	return Frame{}, send, &NoAnswerError{Verb: verb, Sends: send, Timeouts: timeouts, NAKs: naks, Damaged: damaged}
}

// NoAnswerError is an exchange that got no usable answer in all its sends. It matches ErrNoAnswer.
type NoAnswerError struct {
	Verb                           string
	Sends, Timeouts, NAKs, Damaged int
}

func (e *NoAnswerError) Error() string {
	return fmt.Sprintf("%v to %s after %d sends (%d timeouts, %d NAKs, %d damaged answers)",
		ErrNoAnswer, e.Verb, e.Sends, e.Timeouts, e.NAKs, e.Damaged)
}
func (e *NoAnswerError) Is(target error) bool { return target == ErrNoAnswer }

// Heard reports whether the module answered at all (NAKs, damaged frames): a live module on a
// line too noisy for frames this long.
func (e *NoAnswerError) Heard() bool { return e.NAKs+e.Damaged > 0 }

// await waits for the answer to one send. why says why to send again ("nak", "damaged",
// "timeout"); it is "" when the exchange is over (an answer or an error).
func (t *Transport) await(ctx context.Context, req Frame, timeout time.Duration) (ans Frame, why string, err error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return Frame{}, "", fmt.Errorf("%s: %w", req.Verb, ctx.Err())
		case <-t.done:
			return Frame{}, "", ErrTransportClosed
		case <-t.ended:
			return Frame{}, "", fmt.Errorf("%s: %w", req.Verb, t.endErr())
		case <-timer.C:
			t.count(func(s *Stats) { s.Timeouts++ })
			return Frame{}, "timeout", nil
		case line := <-t.lines:
			f, ok, err := ParseLine(line)
			switch {
			case !ok:
				t.lastText = string(bytes.TrimRight(line, "\r\n"))
				continue
			case errors.Is(err, ErrWrongDialect):
				return Frame{}, "", fmt.Errorf("%s: %w", req.Verb, err)
			case err != nil:
				t.count(func(s *Stats) { s.Damaged++ })
				t.suspect = ""
				if fe := (*FrameError)(nil); errors.As(err, &fe) {
					t.suspect = fe.Dialect
				}
				return Frame{}, "damaged", nil
			}
			switch {
			case f.Verb == "BOOT" && f.Seq == eventSeq:
				boot, _ := ParseText(f.Payload)
				return Frame{}, "", &RestartError{Verb: req.Verb, Boot: boot}
			case f.Verb == "NAK" && (f.Seq == req.Seq || f.Seq == eventSeq):
				t.count(func(s *Stats) { s.NAKs++ })
				return Frame{}, "nak", nil
			case f.Seq != req.Seq:
				continue // a late answer to an earlier request, or an event this driver ignores
			case f.Verb == "OK":
				return f, "", nil
			case f.Verb == "ERR":
				txt, perr := ParseText(f.Payload)
				if perr != nil {
					return Frame{}, "", fmt.Errorf("module refused %s with an unreadable ERR payload: %v", req.Verb, perr)
				}
				return Frame{}, "", &ModuleError{Verb: req.Verb, Code: txt["code"], Msg: txt["msg"], Text: txt}
			default:
				return Frame{}, "", fmt.Errorf("module answered %s with verb %s", req.Verb, f.Verb)
			}
		}
	}
}

// WaitBoot waits for a BOOT event (one already seen since the last exchange counts).
func (t *Transport) WaitBoot(ctx context.Context) (Text, error) {
	if err := t.drain(); err != nil {
		return nil, err
	}
	if t.boot != nil {
		boot := t.boot
		t.boot = nil
		return boot, nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the module's BOOT event: %w", ctx.Err())
		case <-t.done:
			return nil, ErrTransportClosed
		case <-t.ended:
			return nil, t.endErr()
		case line := <-t.lines:
			t.note(line)
			if t.boot != nil {
				boot := t.boot
				t.boot = nil
				return boot, nil
			}
		}
	}
}

// textAnswer runs an exchange whose OK payload is text.
func (t *Transport) textAnswer(ctx context.Context, verb string, payload []byte) (Text, error) {
	f, err := t.Exchange(ctx, verb, payload)
	if err != nil {
		return nil, err
	}
	txt, err := ParseText(f.Payload)
	if err != nil {
		return nil, fmt.Errorf("module's answer to %s: %w", verb, err)
	}
	return txt, nil
}

// intField reads a non-negative decimal field of a text answer.
func intField(t Text, verb, key string) (int, error) {
	v, ok := t[key]
	if !ok {
		return 0, fmt.Errorf("module's answer to %s lacks %s (got %s)", verb, key, t)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("module's answer to %s has %s=%q, not a non-negative number", verb, key, v)
	}
	return n, nil
}

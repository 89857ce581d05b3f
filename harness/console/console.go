package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults for zero Options fields.
const (
	DefaultMaxLine   = 1000
	DefaultSettle    = 100 * time.Millisecond
	DefaultSyncEvery = time.Second
)

const (
	tailSize      = 600
	histKeep      = 4096 + tailSize // history behind Tail; see Tail
	maxPending    = 1 << 20         // unconsumed text kept at most; the oldest half goes first
	maxEchoSearch = 4096            // how far into the output Run looks for its echo
	buriedSearch  = 2048            // how far back from the end a prompt followed by noise is looked for
)

// DefaultPrompt is used when Options.Prompt is nil: a line ending in #, $
// or > and an optional space.
var DefaultPrompt = regexp.MustCompile(`[#$>] ?$`)

// Options configure a Console. Only the zero value of each field has a
// default.
type Options struct {
	Name       string         // target name, used in errors and the transcript
	Prompt     *regexp.Regexp // matches the prompt at the END of the cleaned received text
	Transcript *Transcript    // may be nil
	Redactor   *Redactor      // may be nil (then the Transcript's is used for errors and Tail)
	MaxLine    int            // longest command line in bytes; default 1000

	Newline string // sent to end a line; default "\n" (some consoles want "\r")
	// Settle is how long the line must stay quiet before Sync trusts a
	// prompt, Run accepts a prompt that noise followed, and Shell decides
	// the shell abandoned a line; default 100ms.
	Settle    time.Duration
	SyncEvery time.Duration // Sync sends another newline this often; default 1s
	// SyncLine, when set, is a line the device echoes and answers with a
	// prompt without doing anything: a shell comment ("#"). Sync then types
	// it with a number of its own appended instead of an empty line, and a
	// prompt, its echo and a prompt right after end Sync at once: the echo
	// is unique, so the prompt after it is the newest, and no quiet period
	// is needed. Without it (or when the framing is damaged) Sync waits
	// for Settle of quiet after a prompt.
	SyncLine string
	// CursorReply answers the device's cursor position queries (ESC[6n) as
	// a terminal does. Turn it on for busybox shells (see replyCursor); a
	// device that does not expect the answer would read it as input.
	CursorReply bool
}

// Result is the outcome of Shell.
type Result struct {
	Output string // what the command printed, LF line ends, verbatim otherwise
	Status int    // its exit status ($?)
}

// Stats counts bytes exchanged, for line-rate figures.
type Stats struct {
	TxBytes, RxBytes int64
}

// Console talks to one device console. Its methods are safe for concurrent
// use; operations (Sync, Run, Shell, Send, Expect) take turns.
type Console struct {
	rw        io.ReadWriter
	name      string
	promptEnd *regexp.Regexp
	tr        *Transcript
	red       *Redactor
	maxLine   int
	newline   string
	settle    time.Duration
	syncEvery time.Duration
	syncLine  string

	cursorReply bool   // answer ESC[6n
	queryTail   []byte // reader goroutine only: last bytes of the previous read

	op    chan struct{} // one-slot lock: one operation at a time
	wlock chan struct{} // one-slot lock: one write at a time (outlives a cancelled send)
	// Cursor answers asked for and not yet written. A command waits for them: an answer
	// written after the next command reaches busybox while that command runs, and the tty
	// echoes it into the command's output.
	replyMu   sync.Mutex
	replyN    int
	replyIdle chan struct{} // closed while replyN == 0
	done      chan struct{} // closed by Close
	once      sync.Once
	seq       atomic.Uint64 // Shell marker numbers
	echoes    atomic.Bool   // the device has been seen to echo (Run)
	tx        atomic.Int64
	rx        atomic.Int64

	mu      sync.Mutex
	cl      cleaner
	pending []byte // cleaned text not yet consumed
	hist    []byte // cleaned text for Tail
	rxSeq   int64  // bumps on every read, to tell "quiet" from "more came"
	notify  chan struct{}
	readErr error
	last    string   // last command sent, for error messages
	raw     *rawLine // set during Raw: received bytes go there
}

// New starts a Console on rw. One goroutine reads rw from now on until a
// Read fails (io.EOF, or the port closed); Close does not close rw.
func New(rw io.ReadWriter, opts Options) *Console {
	c := &Console{
		rw:        rw,
		name:      opts.Name,
		tr:        opts.Transcript,
		red:       opts.Redactor,
		maxLine:   opts.MaxLine,
		newline:   opts.Newline,
		settle:    opts.Settle,
		syncEvery: opts.SyncEvery,
		syncLine:  opts.SyncLine,

		cursorReply: opts.CursorReply,
		op:          make(chan struct{}, 1),
		wlock:       make(chan struct{}, 1),
		replyIdle:   closedChan(),
		done:        make(chan struct{}),
		notify:      make(chan struct{}),
	}
	if c.name == "" {
		c.name = "console"
	}
	prompt := opts.Prompt
	if prompt == nil {
		prompt = DefaultPrompt
	}
	// \z anchors at the very end, whatever (?m) the caller's pattern uses.
	c.promptEnd = regexp.MustCompile(`(?:` + prompt.String() + `)\z`)
	if c.red == nil && c.tr != nil {
		c.red = c.tr.red
	}
	if c.maxLine <= 0 {
		c.maxLine = DefaultMaxLine
	}
	if c.newline == "" {
		c.newline = "\n"
	}
	if c.settle <= 0 {
		c.settle = DefaultSettle
	}
	if c.syncEvery <= 0 {
		c.syncEvery = DefaultSyncEvery
	}
	// Random start: markers of an earlier Console on the same device (a
	// restarted harness) do not collide with ours.
	c.seq.Store(uint64(rand.IntN(900000) + 100000))
	go c.readLoop()
	return c
}

// Close stops the Console: pending and later operations fail with
// ErrClosed. rw stays open; the reader goroutine ends when rw.Read fails,
// and whatever it reads until then is dropped.
func (c *Console) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// Tail returns the last ~600 bytes received, cleaned and redacted.
func (c *Console) Tail() string {
	c.mu.Lock()
	h := string(c.hist)
	c.mu.Unlock()
	// Redact before cutting: history reaches 4 KiB further back than the
	// tail, so a secret is never cut in half where the tail starts.
	s := c.red.Redact(h)
	if len(s) > tailSize {
		s = s[len(s)-tailSize:]
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
	}
	return s
}

// Stats returns the bytes sent and received so far.
func (c *Console) Stats() Stats {
	return Stats{TxBytes: c.tx.Load(), RxBytes: c.rx.Load()}
}

// Send writes text as is (no newline added). Received text is left pending
// for Expect.
func (c *Console) Send(ctx context.Context, text string) error {
	start := time.Now()
	if err := c.begin(ctx, start, text); err != nil {
		return err
	}
	defer c.end()
	c.setLast(strings.TrimRight(text, "\r\n"))
	return c.send(ctx, start, text)
}

// Expect waits until re matches the cleaned text received and not yet
// consumed, consumes it through the end of the match and returns it.
func (c *Console) Expect(ctx context.Context, re *regexp.Regexp) (string, error) {
	start := time.Now()
	if err := c.begin(ctx, start, ""); err != nil {
		return "", err
	}
	defer c.end()
	var out string
	err := c.waitFor(ctx, func(p []byte, _ bool) (bool, bool) {
		loc := re.FindIndex(p)
		if loc == nil {
			return false, false
		}
		out = string(p[:loc[1]])
		c.pending = append(c.pending[:0], p[loc[1]:]...)
		return true, false
	})
	if err != nil {
		return "", c.waitErr(err, start, c.lastCmd(), fmt.Sprintf("match for %q", re.String()))
	}
	return out, nil
}

// Sync gets the console to a fresh prompt: it discards pending input (boot
// log, noise), sends a newline and waits for the prompt followed by
// Options.Settle of quiet, retrying every Options.SyncEvery until ctx ends.
// With Options.SyncLine it sends that line instead and takes the prompt
// after the line's echo without waiting for quiet.
func (c *Console) Sync(ctx context.Context) error {
	start := time.Now()
	if err := c.begin(ctx, start, ""); err != nil {
		return err
	}
	defer c.end()
	c.setLast("")
	reprobes := 0
	for sent := false; ; sent = true {
		probe, kept, again := "", 0, false
		if c.syncLine != "" {
			probe = c.syncLine + "sync" + strconv.FormatUint(c.seq.Add(1), 10)
			// The prompt the probe will be typed at stays: probeAnswered looks for it.
			kept = c.discardKeepLine()
		} else {
			c.discard()
		}
		if err := c.send(ctx, start, probe+c.newline); err != nil {
			if sent && ctx.Err() != nil {
				// The time ran out while nudging again: what never came is the prompt.
				return c.waitErr(ctx.Err(), start, "", "prompt")
			}
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.syncEvery)
		err := c.waitFor(actx, func(p []byte, quiet bool) (bool, bool) {
			if probe != "" {
				switch c.probeAnswered(p, probe) {
				case probeFramed:
					c.pending = c.pending[:0]
					return true, false
				case probeUnframed:
					if reprobes < maxReprobes {
						// No prompt seen before the echo (a fresh connection): the next
						// probe is typed at the prompt that came, and is framed.
						again = true
						return true, false
					}
				}
			}
			if _, ok := c.findPrompt(p[min(kept, len(p)):], 0, quiet); !ok || !quiet {
				// Even a prompt at the end waits for quiet: newlines sent
				// while the device booted come back as more prompts.
				return false, len(p) > 0
			}
			c.pending = c.pending[:0]
			return true, false
		})
		cancel()
		switch {
		case err == nil && again:
			reprobes++
			continue
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return c.waitErr(ctx.Err(), start, "", "prompt")
		case !errors.Is(err, context.DeadlineExceeded):
			return c.waitErr(err, start, "", "prompt")
		}
	}
}

// Run sends line, waits for the prompt and returns what the device printed
// in between, without the echo of line and without the prompt.
//
// Once the device has been seen to echo, a prompt only counts after the echo
// of this line, so the late prompt of an earlier, timed-out command is not
// taken for this one's. (Shell is immune to that on any device.)
func (c *Console) Run(ctx context.Context, line string) (string, error) {
	if err := c.checkLine(line, ""); err != nil {
		return "", err
	}
	start := time.Now()
	if err := c.begin(ctx, start, line); err != nil {
		return "", err
	}
	defer c.end()
	c.setLast(line)
	c.discard()
	if err := c.send(ctx, start, line+c.newline); err != nil {
		return "", err
	}
	var out string
	err := c.waitFor(ctx, func(p []byte, quiet bool) (bool, bool) {
		from := 0
		_, echoEnd, echoed := findEcho(p, line)
		if echoed {
			from = echoEnd
		} else if c.echoes.Load() {
			return false, false // a prompt before our echo is stale
		}
		loc, ok := c.findPrompt(p, from, quiet)
		if !ok {
			return false, len(p) > from
		}
		if echoed {
			c.echoes.Store(true)
		}
		out = string(p[from:loc[0]])
		c.pending = c.pending[:0]
		return true, false
	})
	if err != nil {
		return "", c.waitErr(err, start, line, "prompt")
	}
	return out, nil
}

// Shell runs cmd (one line of POSIX shell) and returns its output and exit
// status from one round trip; see the package comment for the markers.
//
// A command the shell cannot parse makes it abandon the whole line, so no
// exit status comes: Shell then returns the output (the shell's complaint)
// with Status 2 and an error wrapping ErrNoStatus.
func (c *Console) Shell(ctx context.Context, cmd string) (Result, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return Result{}, fmt.Errorf("%s: Shell takes one line; send scripts with several calls: %w", c.name, ErrBadLine)
	}
	seq := c.seq.Add(1)
	line := shellLine(seq, cmd)
	if err := c.checkLine(line, " with the exit-status markers"); err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := c.begin(ctx, start, cmd); err != nil {
		return Result{}, err
	}
	defer c.end()
	c.setLast(cmd)
	c.discard()
	if err := c.send(ctx, start, line+c.newline); err != nil {
		return Result{}, err
	}
	beginMark := []byte("@@B" + strconv.FormatUint(seq, 10) + "@@\n")
	endMark := []byte("@@E" + strconv.FormatUint(seq, 10) + ":")
	var res Result
	var perr error
	gotStatus := false
	err := c.waitFor(ctx, func(p []byte, quiet bool) (bool, bool) {
		ei, status, after := findEnd(p, endMark)
		if ei < 0 {
			// No end marker: if the shell printed its prompt after our
			// begin marker's output and then went quiet, it gave up on
			// the line (syntax error).
			bi := bytes.LastIndex(p, beginMark)
			if bi < 0 {
				return false, false
			}
			from := bi + len(beginMark)
			loc, ok := c.findPrompt(p, from, quiet)
			if !ok || !quiet {
				return false, true
			}
			res = Result{Output: string(p[from:loc[0]]), Status: 2}
			perr = fmt.Errorf("%s: shell gave no exit status for %q (syntax error?): %q: %w",
				c.name, c.red.Redact(cmd), c.red.Redact(res.Output), ErrNoStatus)
			c.pending = c.pending[:0]
			return true, false
		}
		gotStatus = true
		// The prompt comes right after the end marker's line; whatever
		// follows it (noise, a kernel message) does not matter.
		if _, ok := c.scanPrompt(p, after, min(len(p), after+1024), true); !ok {
			return false, false
		}
		c.pending = c.pending[:0]
		bi := bytes.LastIndex(p[:ei], beginMark)
		if bi < 0 {
			perr = fmt.Errorf("%s: begin marker missing before the exit status of %q: %w", c.name, c.red.Redact(cmd), ErrGarbled)
			return true, false
		}
		res = Result{Output: string(p[bi+len(beginMark) : ei]), Status: status}
		return true, false
	})
	if err != nil {
		waiting := "exit status"
		if gotStatus {
			waiting = "prompt"
		}
		return Result{}, c.waitErr(err, start, cmd, waiting)
	}
	return res, perr
}

// shellLine wraps cmd in the begin and end markers; eval takes cmd as one
// single-quoted word so its quoting, '#' comments and trailing '&' or ';'
// cannot disturb the markers.
func shellLine(seq uint64, cmd string) string {
	q := strings.ReplaceAll(cmd, `'`, `'\''`)
	return fmt.Sprintf(`echo '@@'"B%d"'@@'; eval '%s'; echo '@@'"E%d:$?"'@@'`, seq, q, seq)
}

// What Sync's probe line got, see probeAnswered.
const (
	probePending  = iota
	probeFramed   // prompt, echo, prompt: the newest prompt
	probeUnframed // echo and prompt, no prompt seen before the echo
)

// maxReprobes bounds the probes Sync sends at once after unframed answers.
const maxReprobes = 3

// probeAnswered looks at whether p ends with a prompt that the device printed
// for Sync's probe line: a prompt, the echo of probe on the same line, and
// then only a prompt (probeFramed). The prompt before the echo tells the line
// editor's echo from the kernel's echo of a line typed while a command ran
// (the shell then reads that line again and answers it later). On a fresh
// connection no prompt came before the echo (probeUnframed): Sync then types
// another probe at the prompt that came.
func (c *Console) probeAnswered(p []byte, probe string) int {
	nl := bytes.LastIndexByte(p, '\n')
	if nl < 0 || !c.promptEnd.Match(p[nl+1:]) {
		return probePending
	}
	for off := 0; off <= nl; {
		s, e, ok := findEcho(p[off:], probe)
		if !ok {
			return probePending
		}
		s, e = s+off, e+off
		if e == nl+1 {
			ls := bytes.LastIndexByte(p[:s], '\n') + 1
			if c.promptEnd.Match(p[ls:s]) {
				return probeFramed
			}
			return probeUnframed
		}
		off = s + 1
	}
	return probePending
}

// findEnd finds "<endMark><digits>@@" and returns where it starts, the
// status, and the offset just past it.
func findEnd(p, endMark []byte) (start, status, after int) {
	for off := 0; ; {
		i := bytes.Index(p[off:], endMark)
		if i < 0 {
			return -1, 0, 0
		}
		i += off
		j := i + len(endMark)
		k := j
		for k < len(p) && k-j < 3 && p[k] >= '0' && p[k] <= '9' {
			k++
		}
		if k > j && bytes.HasPrefix(p[k:], []byte("@@")) {
			n, _ := strconv.Atoi(string(p[j:k]))
			return i, n, k + 2
		}
		off = i + 1
	}
}

// findPrompt looks for the prompt in p[from:]. A prompt at the very end
// counts at once. When the line has been quiet, a prompt followed by other
// text also counts (noise or a kernel message arrived after it); the last
// one in the final 2 KiB wins. It returns the prompt's [start, end).
func (c *Console) findPrompt(p []byte, from int, quiet bool) ([2]int, bool) {
	if loc := c.promptEnd.FindIndex(p[from:]); loc != nil {
		return [2]int{from + loc[0], len(p)}, true
	}
	if !quiet {
		return [2]int{}, false
	}
	return c.scanPrompt(p, max(from, len(p)-buriedSearch), len(p), false)
}

// scanPrompt tries every end position k in (from, to] and matches the
// prompt against the end of p[:k], looking back at most one line (and 256
// bytes). It returns the first or the last match.
func (c *Console) scanPrompt(p []byte, from, to int, first bool) (loc [2]int, ok bool) {
	ls := from // start of the line holding position k-1
	for k := from + 1; k <= to; k++ {
		if p[k-1] == '\n' {
			ls = k
			continue
		}
		w := max(ls, k-256)
		if m := c.promptEnd.FindIndex(p[w:k]); m != nil {
			loc, ok = [2]int{w + m[0], k}, true
			if first {
				return loc, ok
			}
		}
	}
	return loc, ok
}

// findEcho finds the device's echo of line in text: the whole line,
// allowing wrap breaks (LF after cleaning) inside it, followed by a line
// end or the end of text. Noise may precede it; the first place that
// matches within the first 4 KiB wins. It returns the echo's [start, end),
// end including its line end.
func findEcho(text []byte, line string) (start, end int, ok bool) {
	limit := min(len(text), maxEchoSearch)
	for i := 0; i < limit || i == 0; i++ {
		if n, ok := matchEcho(text[i:], line); ok {
			return i, i + n, true
		}
		if line == "" {
			break // an empty echo would match at any line end
		}
	}
	return 0, 0, false
}

// stripEcho returns text without the echo of line and whatever preceded it;
// text comes back whole when there is no echo.
func stripEcho(text, line string) string {
	if _, end, ok := findEcho([]byte(text), line); ok {
		return text[end:]
	}
	return text
}

func matchEcho(t []byte, line string) (int, bool) {
	ti := 0
	for li := 0; li < len(line); {
		switch {
		case ti == len(t):
			return 0, false
		case t[ti] == line[li]:
			ti++
			li++
		case t[ti] == '\n' && li > 0: // wrap break inserted by the line editor
			ti++
		default:
			return 0, false
		}
	}
	switch {
	case ti == len(t):
		return ti, true
	case t[ti] == '\n':
		return ti + 1, true
	}
	return 0, false
}

// checkLine enforces MaxLine and refuses control characters. what explains
// what the length includes (Shell's markers).
func (c *Console) checkLine(line, what string) error {
	if len(line) > c.maxLine {
		return fmt.Errorf("%s: command line is %d bytes%s, over the limit of %d (Options.MaxLine; line editors truncate near 1024): %w",
			c.name, len(line), what, c.maxLine, ErrLineTooLong)
	}
	for i := 0; i < len(line); i++ {
		if b := line[i]; b < 0x20 || b == 0x7f {
			return fmt.Errorf("%s: command line has control character %#02x at byte %d: %w", c.name, b, i, ErrBadLine)
		}
	}
	return nil
}

// cursorQuery is the VT100 "report cursor position" request (DSR 6) busybox's
// line editor sends after each prompt.
const cursorQuery = "\x1b[6n"

// cursorQueried reports whether p, with the tail of the previous read, holds a
// cursor query. Only the reader goroutine calls it.
func (c *Console) cursorQueried(p []byte) bool {
	buf := append(c.queryTail, p...)
	found := bytes.Contains(buf, []byte(cursorQuery))
	keep := min(len(buf), len(cursorQuery)-1)
	c.queryTail = append(c.queryTail[:0], buf[len(buf)-keep:]...)
	return found
}

// replyCursor answers a cursor query as a terminal would. Unanswered, busybox
// waits about 20 ms for the answer before it reads the next command: most of
// a command's round trip. Column 1 is always a safe answer: busybox only moves
// its idea of the cursor when the reported column lies beyond its prompt.
func (c *Console) replyCursor() {
	defer c.replyDone()
	select {
	case c.wlock <- struct{}{}:
	case <-c.done:
		return
	}
	defer func() { <-c.wlock }()
	reply := []byte("\x1b[1;1R")
	if n, _ := c.rw.Write(reply); n > 0 {
		c.tx.Add(int64(n))
		c.tr.Record(c.name, Sent, reply[:n])
	}
}

// replyDone counts a cursor answer written (or given up at close).
func (c *Console) replyDone() {
	c.replyMu.Lock()
	defer c.replyMu.Unlock()
	if c.replyN--; c.replyN == 0 {
		close(c.replyIdle)
	}
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func (c *Console) readLoop() {
	buf := make([]byte, 4096)
	for {
		n, err := c.rw.Read(buf)
		if n > 0 {
			c.received(buf[:n])
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.wake()
			c.mu.Unlock()
			return
		}
	}
}

func (c *Console) received(p []byte) {
	if c.isClosed() {
		return
	}
	c.rx.Add(int64(len(p)))
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		raw.feed(p)
		return
	}
	c.tr.Record(c.name, Received, p)
	if c.cursorReply && c.cursorQueried(p) {
		// Counted before the prompt wakes anyone: no command is sent ahead of the answer.
		c.replyMu.Lock()
		if c.replyN == 0 {
			c.replyIdle = make(chan struct{})
		}
		c.replyN++
		c.replyMu.Unlock()
		go c.replyCursor()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	before := len(c.pending)
	c.pending = c.cl.feed(c.pending, p)
	c.hist = append(c.hist, c.pending[before:]...)
	if len(c.hist) > 2*histKeep {
		c.hist = append(c.hist[:0], c.hist[len(c.hist)-histKeep:]...)
	}
	if len(c.pending) > maxPending {
		c.pending = append(c.pending[:0], c.pending[len(c.pending)-maxPending/2:]...)
	}
	c.rxSeq++
	c.wake()
}

// wake tells waiters that pending changed; c.mu is held.
func (c *Console) wake() {
	close(c.notify)
	c.notify = make(chan struct{})
}

func (c *Console) discard() {
	c.mu.Lock()
	c.pending = c.pending[:0]
	c.mu.Unlock()
}

// discardKeepLine discards pending text except its unfinished last line (up
// to 256 bytes: a prompt waiting for input) and returns how much it kept.
func (c *Console) discardKeepLine() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending
	from := max(bytes.LastIndexByte(p, '\n')+1, len(p)-256)
	n := copy(p, p[from:])
	c.pending = p[:n]
	return n
}

// waitFor calls check with the pending text, under c.mu, now and whenever
// more arrives, until it reports done. check may consume from c.pending.
// When check asks for quiet, it is called again with quiet=true once
// Options.Settle has passed without a byte arriving.
func (c *Console) waitFor(ctx context.Context, check func(p []byte, quiet bool) (done, wantQuiet bool)) error {
	quietSeq := int64(-1)
	for {
		c.mu.Lock()
		done, wantQuiet := check(c.pending, quietSeq == c.rxSeq)
		seq, ch, rerr := c.rxSeq, c.notify, c.readErr
		c.mu.Unlock()
		if done {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("console input ended: %w", rerr)
		}
		var timer <-chan time.Time
		var t *time.Timer
		if wantQuiet {
			t = time.NewTimer(c.settle)
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			quietSeq = seq
		case <-ctx.Done():
		case <-c.done:
		}
		if t != nil {
			t.Stop()
		}
		if c.isClosed() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// send writes s. The write runs in its own goroutine so that a device that
// stops reading (flow control, a full pipe) cannot hold the caller past
// ctx; writes stay in order because the next one waits for it.
func (c *Console) send(ctx context.Context, start time.Time, s string) error {
	c.replyMu.Lock()
	idle := c.replyIdle
	c.replyMu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		return c.waitErr(ctx.Err(), start, c.lastCmd(), "write completion")
	case <-c.done:
		return c.waitErr(ErrClosed, start, c.lastCmd(), "write completion")
	}
	select {
	case c.wlock <- struct{}{}:
	case <-ctx.Done():
		return c.waitErr(ctx.Err(), start, c.lastCmd(), "write completion")
	case <-c.done:
		return c.waitErr(ErrClosed, start, c.lastCmd(), "write completion")
	}
	p := []byte(s)
	errc := make(chan error, 1)
	go func() {
		n, err := c.rw.Write(p)
		if n > 0 {
			c.tx.Add(int64(n))
			c.tr.Record(c.name, Sent, p[:n])
		}
		<-c.wlock
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%s: writing %q: %w", c.name, c.red.Redact(strings.TrimRight(s, "\r\n")), err)
		}
		return nil
	case <-ctx.Done():
		return c.waitErr(ctx.Err(), start, c.lastCmd(), "write completion")
	case <-c.done:
		return c.waitErr(ErrClosed, start, c.lastCmd(), "write completion")
	}
}

// begin takes the operation turn.
func (c *Console) begin(ctx context.Context, start time.Time, cmd string) error {
	select {
	case c.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return c.waitErr(ctx.Err(), start, cmd, "turn (another operation is running)")
	case <-c.done:
		return c.waitErr(ErrClosed, start, cmd, "turn")
	}
}

func (c *Console) end() { <-c.op }

func (c *Console) setLast(s string) {
	c.mu.Lock()
	c.last = s
	c.mu.Unlock()
}

func (c *Console) lastCmd() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// waitErr turns a wait failure into the error callers see: *TimeoutError
// for a deadline, otherwise a wrapped error naming target, command and what
// was awaited. Everything from the device or the caller is redacted.
func (c *Console) waitErr(err error, start time.Time, cmd, waiting string) error {
	cmd = c.red.Redact(cmd)
	if errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{Target: c.name, Command: cmd, Waiting: waiting, Elapsed: time.Since(start), Tail: c.Tail()}
	}
	after := ""
	if cmd != "" {
		after = fmt.Sprintf(" after %q", cmd)
	}
	if errors.Is(err, ErrClosed) {
		return fmt.Errorf("%s: waiting for %s%s: %w", c.name, waiting, after, err)
	}
	return fmt.Errorf("%s: waiting for %s%s: %w; last output: %q", c.name, waiting, after, err, c.Tail())
}

func (c *Console) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

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
	"testing"
	"time"
)

// hangGuard bounds waits that would otherwise hang a broken test; it is not
// a speed assertion.
const hangGuard = 10 * time.Second

var busyboxPrompt = regexp.MustCompile(`hil\$ $`)

const bbPrompt = "hil$ \x1b[6n"

// miniShell is the fake device's command set.
func miniShell(d *fakeDev, started chan<- string) func(string) (string, int) {
	return func(cmd string) (string, int) {
		if started != nil {
			started <- cmd
		}
		word, arg, _ := strings.Cut(cmd, " ")
		switch word {
		case "echo":
			return arg + "\n", 0
		case "printf":
			return arg, 0
		case "status":
			n, _ := strconv.Atoi(arg)
			return "", n
		case "hang":
			d.write("working...\r\n")
			d.hang()
			return "", 0
		case "syntax":
			return "sh: syntax error: unexpected end of file\n", -1
		case "reboot":
			d.write("reboot: Restarting system\r\n")
			for i := range 20 {
				d.write(fmt.Sprintf("[    %d.%06d] boot: probing %d\r\n", i, i*37, i))
				d.sleep(5 * time.Millisecond)
			}
			d.write("\x00\xff\xfe\x1b[0m garbage from a baud switch \x07")
			return "", 0
		}
		return "sh: " + word + ": not found\n", 127
	}
}

func newFake(t testing.TB, d *fakeDev, opts Options) *Console {
	t.Helper()
	if d.prompt == "" {
		d.prompt = bbPrompt
	}
	if d.handle == nil {
		d.handle = miniShell(d, nil)
	}
	rw := d.start(t)
	if opts.Name == "" {
		opts.Name = "dut1"
	}
	if opts.Prompt == nil {
		opts.Prompt = busyboxPrompt
	}
	opts.Settle = 20 * time.Millisecond
	c := New(rw, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func mustSync(t testing.TB, c *Console) {
	t.Helper()
	if err := c.Sync(ctxT(t)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func TestRunStripsEchoPromptAndEscapes(t *testing.T) {
	for _, chunk := range []int{0, 1, 3} { // 1: every escape sequence and CRLF split
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			d := &fakeDev{echo: true, chunk: chunk, boot: "U-Boot 2024.01\r\nStarting kernel ...\r\n"}
			c := newFake(t, d, Options{})
			mustSync(t, c)
			got, err := c.Run(ctxT(t), "echo hello world")
			if err != nil {
				t.Fatal(err)
			}
			if got != "hello world\n" {
				t.Errorf("Run = %q, want %q", got, "hello world\n")
			}
			got, err = c.Run(ctxT(t), "")
			if err != nil || got != "" {
				t.Errorf("Run(empty) = %q, %v; want empty", got, err)
			}
		})
	}
}

func TestRunWithoutEcho(t *testing.T) {
	d := &fakeDev{echo: false, prompt: "dut> "}
	c := newFake(t, d, Options{Prompt: regexp.MustCompile(`dut> $`)})
	mustSync(t, c)
	got, err := c.Run(ctxT(t), "echo two\nlines")
	if !errors.Is(err, ErrBadLine) {
		t.Errorf("Run with LF = %q, %v; want ErrBadLine", got, err)
	}
	got, err = c.Run(ctxT(t), "echo no echo here")
	if err != nil || got != "no echo here\n" {
		t.Errorf("Run = %q, %v; want %q", got, err, "no echo here\n")
	}
}

func TestRunToleratesEchoWrap(t *testing.T) {
	d := &fakeDev{echo: true, wrap: 80}
	c := newFake(t, d, Options{})
	mustSync(t, c)
	for _, n := range []int{70, 75, 76, 160, 900} { // 75: the line ends exactly at column 80
		arg := strings.Repeat("y", n-6) + "Z"
		got, err := c.Run(ctxT(t), "echo "+arg)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if got != arg+"\n" {
			t.Errorf("n=%d: Run = %q, want the argument alone", n, got)
		}
	}
}

func TestShellStatusAndOutput(t *testing.T) {
	started := make(chan string, 10)
	d := &fakeDev{echo: true, wrap: 80, chunk: 7}
	d.handle = miniShell(d, started)
	c := newFake(t, d, Options{})
	mustSync(t, c)
	cases := []struct {
		cmd    string
		out    string
		status int
	}{
		{"echo hello", "hello\n", 0},
		{"printf no-newline", "no-newline", 0},
		{"status 3", "", 3},
		{"nosuch", "sh: nosuch: not found\n", 127},
		{`echo it's "quoted" # not a comment`, `it's "quoted" # not a comment` + "\n", 0},
	}
	for _, tc := range cases {
		res, err := c.Shell(ctxT(t), tc.cmd)
		if err != nil {
			t.Fatalf("Shell(%q): %v", tc.cmd, err)
		}
		if res.Output != tc.out || res.Status != tc.status {
			t.Errorf("Shell(%q) = %+v, want {%q %d}", tc.cmd, res, tc.out, tc.status)
		}
		if got := <-started; got != tc.cmd {
			t.Errorf("device ran %q, want %q (quoting lost)", got, tc.cmd)
		}
	}
	if _, err := c.Shell(ctxT(t), "echo a\necho b"); !errors.Is(err, ErrBadLine) {
		t.Errorf("Shell with LF: %v, want ErrBadLine", err)
	}
}

func TestShellSyntaxErrorGivesNoStatus(t *testing.T) {
	d := &fakeDev{echo: true}
	c := newFake(t, d, Options{})
	mustSync(t, c)
	res, err := c.Shell(ctxT(t), "syntax")
	if !errors.Is(err, ErrNoStatus) {
		t.Fatalf("Shell(syntax) = %+v, %v; want ErrNoStatus", res, err)
	}
	if res.Status != 2 || !strings.Contains(res.Output, "syntax error") {
		t.Errorf("Result = %+v, want status 2 and the shell's complaint", res)
	}
	// The console is still in step.
	if res, err := c.Shell(ctxT(t), "echo after"); err != nil || res.Output != "after\n" {
		t.Errorf("Shell after = %+v, %v", res, err)
	}
}

// TestShellIgnoresStaleOutput: a command times out; its output and end
// marker arrive only after the next command was sent (the device typed
// ahead). The next Shell must return its own output, not the stale one.
func TestShellIgnoresStaleOutput(t *testing.T) {
	host, dev := newBufPipe(), newBufPipe() // host reads host; device reads dev
	defer host.Close()
	defer dev.Close()
	seqRe := regexp.MustCompile(`"B(\d+)"`)
	go func() {
		host.Write([]byte("$ "))
		var seqs []string
		buf := make([]byte, 4096)
		var acc []byte
		for len(seqs) < 2 {
			n, err := dev.Read(buf)
			if err != nil {
				return
			}
			acc = append(acc, buf[:n]...)
			for {
				i := bytes.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				if m := seqRe.FindSubmatch(acc[:i]); m != nil {
					seqs = append(seqs, string(m[1]))
				}
				acc = acc[i+1:]
			}
		}
		host.Write([]byte(fmt.Sprintf("@@B%s@@\r\nstale\r\n@@E%s:0@@\r\n$ ", seqs[0], seqs[0])))
		host.Write([]byte(fmt.Sprintf("@@B%s@@\r\nfresh\r\n@@E%s:1@@\r\n$ ", seqs[1], seqs[1])))
	}()
	c := New(struct {
		io.Reader
		io.Writer
	}{host, dev}, Options{Name: "dut1", Prompt: regexp.MustCompile(`\$ $`)})
	defer c.Close()

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Shell(short, "slow")
	var te *TimeoutError
	if !errors.As(err, &te) || te.Waiting != "exit status" {
		t.Fatalf("first Shell = %v, want a TimeoutError waiting for the exit status", err)
	}
	res, err := c.Shell(ctxT(t), "fast")
	if err != nil {
		t.Fatal(err)
	}
	if res.Output != "fresh\n" || res.Status != 1 {
		t.Errorf("second Shell = %+v, want {fresh 1}", res)
	}
}

func TestTimeoutNamesCommandAndTail(t *testing.T) {
	d := &fakeDev{echo: true}
	c := newFake(t, d, Options{Name: "dut7"})
	mustSync(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Run(ctx, "hang now")
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Run(hang) = %v, want *TimeoutError", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("TimeoutError does not unwrap to context.DeadlineExceeded")
	}
	if te.Target != "dut7" || te.Command != "hang now" || te.Waiting != "prompt" {
		t.Errorf("TimeoutError = %+v", te)
	}
	if !strings.Contains(te.Tail, "working...") {
		t.Errorf("Tail %q lacks the last output", te.Tail)
	}
	msg := err.Error()
	want := regexp.MustCompile(`^dut7: no prompt within \d+ms after "hang now"; last output: ".*working\.\.\.\\n"$`)
	if !want.MatchString(msg) {
		t.Errorf("Error() = %q, want it to match %s", msg, want)
	}
}

func TestCancelReturnsPromptly(t *testing.T) {
	started := make(chan string, 1)
	d := &fakeDev{echo: true}
	d.handle = miniShell(d, started)
	c := newFake(t, d, Options{})
	mustSync(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Shell(ctx, "hang")
		errc <- err
	}()
	<-started // the device is busy with it
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Shell after cancel: %v, want context.Canceled", err)
		}
		if !strings.Contains(err.Error(), `"hang"`) {
			t.Errorf("error %q does not name the command", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Shell did not return after cancel")
	}
}

// TestSendHonoursCtxWhenDeviceStopsReading: io.Pipe blocks the writer until
// the far end reads, as a flow-controlled line would.
func TestSendHonoursCtxWhenDeviceStopsReading(t *testing.T) {
	hr, _ := io.Pipe()
	_, hw := io.Pipe()
	defer hw.Close()
	c := New(struct {
		io.Reader
		io.Writer
	}{hr, hw}, Options{Name: "dut1"})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Send(ctx, "stuck\n") }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Send = %v, want context.Canceled", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Send did not return after cancel")
	}
}

func TestNoiseDoesNotBreakSyncRunShell(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func() []byte {
		b := make([]byte, 1+rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	d := &fakeDev{echo: true, wrap: 80, chunk: 5, noise: noise}
	d.boot = string(noise()) + "\r\n" + string(noise())
	c := newFake(t, d, Options{})
	for i := range 30 {
		mustSync(t, c)
		arg := fmt.Sprintf("round %d %s", i, strings.Repeat("=", i*3))
		got, err := c.Run(ctxT(t), "echo "+arg)
		if err != nil {
			t.Fatalf("Run %d: %v", i, err)
		}
		if got != arg+"\n" {
			t.Errorf("Run %d = %q, want %q", i, got, arg+"\n")
		}
		res, err := c.Shell(ctxT(t), "status "+strconv.Itoa(i))
		if err != nil || res.Status != i || res.Output != "" {
			t.Errorf("Shell %d = %+v, %v", i, res, err)
		}
	}
}

func TestSyncDiscardsBootLogAfterReboot(t *testing.T) {
	d := &fakeDev{echo: true}
	c := newFake(t, d, Options{SyncEvery: 30 * time.Millisecond})
	mustSync(t, c)
	if err := c.Send(ctxT(t), "reboot\n"); err != nil {
		t.Fatal(err)
	}
	// Sync sends newlines while the device boots; they queue up and come
	// back as several prompts, which must not leak into the next command.
	mustSync(t, c)
	got, err := c.Run(ctxT(t), "echo up")
	if err != nil || got != "up\n" {
		t.Errorf("Run after reboot = %q, %v; want %q", got, err, "up\n")
	}
	res, err := c.Shell(ctxT(t), "echo again")
	if err != nil || res.Output != "again\n" {
		t.Errorf("Shell after reboot = %+v, %v", res, err)
	}
}

func TestSyncTimeout(t *testing.T) {
	d := &fakeDev{prompt: "nothing like it\r\n"}
	c := newFake(t, d, Options{SyncEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	err := c.Sync(ctx)
	var te *TimeoutError
	if !errors.As(err, &te) || te.Waiting != "prompt" || !strings.Contains(te.Tail, "nothing like it") {
		t.Fatalf("Sync = %v, want TimeoutError with the tail", err)
	}
	// Several newlines were sent (retries).
	if n := len(d.received()); n < 2 {
		t.Errorf("device got %d lines, want retries", n)
	}
}

func TestExpectAndSend(t *testing.T) {
	d := &fakeDev{echo: true}
	c := newFake(t, d, Options{})
	mustSync(t, c)
	if err := c.Send(ctxT(t), "echo login: ready\n"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Expect(ctxT(t), regexp.MustCompile(`(?m)^login: \w+`))
	if err != nil {
		t.Fatal(err)
	}
	if got != "echo login: ready\nlogin: ready" {
		t.Errorf("Expect = %q", got)
	}
	// The match was consumed: what remains is the newline and the prompt.
	got, err = c.Expect(ctxT(t), busyboxPrompt)
	if err != nil || got != "\nhil$ " {
		t.Errorf("second Expect = %q, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Expect(ctx, regexp.MustCompile(`never`))
	var te *TimeoutError
	if !errors.As(err, &te) || te.Command != "echo login: ready" || !strings.Contains(te.Waiting, "never") {
		t.Errorf("Expect timeout = %v", err)
	}
}

func TestLineLimits(t *testing.T) {
	d := &fakeDev{echo: true}
	c := newFake(t, d, Options{})
	mustSync(t, c)
	long := "echo " + strings.Repeat("x", DefaultMaxLine-4)
	_, err := c.Run(ctxT(t), long)
	if !errors.Is(err, ErrLineTooLong) || !strings.Contains(err.Error(), "1000") {
		t.Errorf("Run(%d bytes) = %v, want ErrLineTooLong naming 1000", len(long), err)
	}
	if _, err := c.Run(ctxT(t), long[:DefaultMaxLine]); err != nil {
		t.Errorf("Run(%d bytes) = %v, want it accepted", DefaultMaxLine, err)
	}
	if _, err := c.Run(ctxT(t), "ls\tx"); !errors.Is(err, ErrBadLine) {
		t.Errorf("Run with TAB = %v, want ErrBadLine", err)
	}

	small := newFake(t, &fakeDev{echo: true}, Options{MaxLine: 50})
	_, err = small.Shell(ctxT(t), "echo hi")
	if !errors.Is(err, ErrLineTooLong) || !strings.Contains(err.Error(), "limit of 50") {
		t.Errorf("Shell over MaxLine 50 = %v, want ErrLineTooLong naming 50", err)
	}
	for _, line := range d.received() {
		if len(line) > DefaultMaxLine {
			t.Errorf("device received a %d-byte line", len(line))
		}
	}
}

func TestSecretsRedactedInTailErrorsAndTranscript(t *testing.T) {
	const pin = "Zq7Xk2Pm9"
	red := NewRedactor(pin)
	var tr bytes.Buffer
	tx := NewTranscript(&tr, red)
	d := &fakeDev{echo: true, chunk: 2} // the PIN arrives split across reads
	c := newFake(t, d, Options{Transcript: tx})
	mustSync(t, c)
	got, err := c.Run(ctxT(t), "echo pin="+pin)
	if err != nil || got != "pin="+pin+"\n" {
		t.Fatalf("Run = %q, %v (callers get the real value)", got, err)
	}
	if tail := c.Tail(); strings.Contains(tail, pin) || !strings.Contains(tail, "pin="+Redacted) {
		t.Errorf("Tail = %q, want the PIN redacted", tail)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Run(ctx, "hang "+pin)
	if err == nil || strings.Contains(err.Error(), pin) || !strings.Contains(err.Error(), "hang "+Redacted) {
		t.Errorf("error %v: want the PIN redacted in command and tail", err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tr.String(), pin) {
		t.Errorf("transcript leaks the PIN:\n%s", tr.String())
	}
	if n := strings.Count(tr.String(), Redacted); n < 4 { // 2 sent, 2 echoed, 1 output
		t.Errorf("transcript has %d redactions, want >= 4:\n%s", n, tr.String())
	}
}

func TestStatsAndClose(t *testing.T) {
	d := &fakeDev{echo: true}
	c := newFake(t, d, Options{})
	mustSync(t, c)
	before := c.Stats()
	if _, err := c.Run(ctxT(t), "echo 12345"); err != nil {
		t.Fatal(err)
	}
	after := c.Stats()
	if tx := after.TxBytes - before.TxBytes; tx != int64(len("echo 12345\n")) {
		t.Errorf("TxBytes grew by %d, want %d", tx, len("echo 12345\n"))
	}
	if rx := after.RxBytes - before.RxBytes; rx != int64(len("echo 12345\r\n12345\r\n"+bbPrompt)) {
		t.Errorf("RxBytes grew by %d", rx)
	}

	started := make(chan string, 1)
	d2 := &fakeDev{echo: true}
	d2.handle = miniShell(d2, started)
	c2 := newFake(t, d2, Options{})
	mustSync(t, c2)
	errc := make(chan error, 1)
	go func() { _, err := c2.Run(context.Background(), "hang"); errc <- err }()
	<-started
	c2.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Run during Close = %v, want ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Run did not return after Close")
	}
	if _, err := c2.Run(context.Background(), "echo"); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestInputEndedIsReported(t *testing.T) {
	host, dev := newBufPipe(), newBufPipe()
	c := New(struct {
		io.Reader
		io.Writer
	}{host, dev}, Options{Name: "dut1"})
	defer c.Close()
	host.Write([]byte("partial output"))
	host.Close()
	_, err := c.Run(ctxT(t), "echo")
	if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "partial output") {
		t.Errorf("Run on ended input = %v, want io.EOF with the tail", err)
	}
}

func TestStripEcho(t *testing.T) {
	cases := []struct{ text, line, want string }{
		{"ls\nfile\n", "ls", "file\n"},
		{"file\n", "ls", "file\n"},                     // no echo
		{"\x01junk\nls\nfile\n", "ls", "file\n"},       // noise before the echo
		{"echo ab\ncd\nabcd\n", "echo abcd", "abcd\n"}, // wrap break
		{"ls", "ls", ""},                               // echo, nothing else yet
		{"lsof\n", "ls", "lsof\n"},                     // not an echo of ls
		{"\n", "", ""},
		{"out\n", "", "out\n"},
	}
	for _, tc := range cases {
		if got := stripEcho(tc.text, tc.line); got != tc.want {
			t.Errorf("stripEcho(%q, %q) = %q, want %q", tc.text, tc.line, got, tc.want)
		}
	}
}

func BenchmarkRunFake(b *testing.B) {
	d := &fakeDev{echo: true}
	c := newFake(b, d, Options{})
	mustSync(b, c)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Run(ctx, "echo bench"); err != nil {
			b.Fatal(err)
		}
	}
}

package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

const busybox = "/bin/busybox"

// startBusybox runs a real `busybox sh -i` on a pty (80 columns, as a
// serial console) and returns a synchronised Console on its master side.
func startBusybox(t testing.TB, opts Options) *Console {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("no %s: %v", busybox, err)
	}
	cmd := exec.Command(busybox, "sh", "-i")
	cmd.Env = []string{"PS1=hil$ ", "PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "TERM=dumb"}
	cmd.Dir = t.TempDir()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatalf("starting busybox on a pty: %v", err)
	}
	opts.Name = "bb"
	opts.Prompt = busyboxPrompt
	c := New(f, opts)
	t.Cleanup(func() {
		c.Close()
		cmd.Process.Kill()
		f.Close() // ends the reader goroutine (EIO/closed) and hangs up the session
		cmd.Wait()
	})
	mustSync(t, c)
	return c
}

func shellOK(t testing.TB, c *Console, cmd string) Result {
	t.Helper()
	res, err := c.Shell(ctxT(t), cmd)
	if err != nil {
		t.Fatalf("Shell(%q): %v", cmd, err)
	}
	return res
}

func TestBusyboxRunAndShell(t *testing.T) {
	c := startBusybox(t, Options{})
	got, err := c.Run(ctxT(t), "echo hello")
	if err != nil || got != "hello\n" {
		t.Errorf("Run(echo hello) = %q, %v", got, err)
	}
	cases := []struct {
		cmd    string
		out    string
		status int
	}{
		{"true", "", 0},
		{"false", "", 1},
		{"(exit 7)", "", 7},
		{`printf 'a\nb'`, "a\nb", 0},
		{`echo "it's" # a comment`, "it's\n", 0},
		{"x=42; cd /tmp", "", 0},
		{"echo $x; pwd", "42\n/tmp\n", 0}, // state persists between calls
		{"sleep 0 &", "", 0},              // a trailing & does not eat the end marker
	}
	for _, tc := range cases {
		res := shellOK(t, c, tc.cmd)
		if tc.cmd == "sleep 0 &" {
			res.Output = "" // the shell prints a job number
		}
		if res.Output != tc.out || res.Status != tc.status {
			t.Errorf("Shell(%q) = %+v, want {%q %d}", tc.cmd, res, tc.out, tc.status)
		}
	}
	res := shellOK(t, c, "ls /nonexistent")
	if res.Status == 0 || !strings.Contains(res.Output, "nonexistent") {
		t.Errorf("Shell(ls /nonexistent) = %+v, want non-zero status and the complaint", res)
	}
}

func TestBusyboxEchoWrapsPast80Columns(t *testing.T) {
	for _, reply := range []bool{false, true} {
		t.Run(fmt.Sprintf("CursorReply=%v", reply), func(t *testing.T) {
			echoWraps(t, startBusybox(t, Options{CursorReply: reply}))
		})
	}
}

// TestBusyboxCursorReply: answering busybox's cursor queries leaves outputs,
// exit statuses and the transcript intact, and the answer is recorded.
func TestBusyboxCursorReply(t *testing.T) {
	var tr syncBuffer
	c := startBusybox(t, Options{CursorReply: true, Transcript: NewTranscript(&tr, nil)})
	for i := range 20 {
		res := shellOK(t, c, fmt.Sprintf("echo n%d; test %d -lt 10", i, i))
		want := 0
		if i >= 10 {
			want = 1
		}
		if res.Output != fmt.Sprintf("n%d\n", i) || res.Status != want {
			t.Fatalf("Shell %d = %+v", i, res)
		}
	}
	c.Close()
	if !strings.Contains(tr.String(), `> "\x1b[1;1R"`) {
		t.Errorf("transcript has no cursor answer:\n%s", tr.String())
	}
}

func echoWraps(t *testing.T, c *Console) {
	for _, n := range []int{75, 76, 150, 990} { // 75 + "hil$ " ends exactly at column 80
		arg := strings.Repeat("w", n-6) + "Z"
		got, err := c.Run(ctxT(t), "echo "+arg)
		if err != nil {
			t.Fatalf("Run(%d bytes): %v", n, err)
		}
		if got != arg+"\n" {
			t.Errorf("Run(%d bytes) = %q, want the argument alone", n, got)
		}
	}
	long := strings.Repeat("v", 300)
	if res := shellOK(t, c, "echo "+long); res.Output != long+"\n" {
		t.Errorf("Shell(300 bytes) = %+v", res)
	}
}

func TestBusyboxSyntaxError(t *testing.T) {
	c := startBusybox(t, Options{})
	res, err := c.Shell(ctxT(t), "if true")
	if !errors.Is(err, ErrNoStatus) || !strings.Contains(res.Output, "syntax error") {
		t.Fatalf("Shell(if true) = %+v, %v; want ErrNoStatus with the complaint", res, err)
	}
	if res := shellOK(t, c, "echo still here"); res.Output != "still here\n" {
		t.Errorf("after a syntax error: %+v", res)
	}
}

func TestBusyboxTimeoutThenSync(t *testing.T) {
	c := startBusybox(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Shell(ctx, "sleep 1; echo late")
	var te *TimeoutError
	if !errors.As(err, &te) || te.Waiting != "exit status" || te.Command != "sleep 1; echo late" {
		t.Fatalf("Shell(sleep) = %v, want TimeoutError naming the command", err)
	}
	if !strings.Contains(err.Error(), `bb: no exit status within `) || !strings.Contains(err.Error(), `after "sleep 1; echo late"; last output: "`) {
		t.Errorf("message %q", err)
	}
	if !strings.Contains(te.Tail, "eval 'sleep 1; echo late'") {
		t.Errorf("Tail %q does not show what the device echoed", te.Tail)
	}
	// The driver resynchronises; the late output is discarded, not taken
	// for the next command's.
	mustSync(t, c)
	if res := shellOK(t, c, "echo fresh"); res.Output != "fresh\n" {
		t.Errorf("after resync: %+v", res)
	}
	if got, err := c.Run(ctxT(t), "echo run"); err != nil || got != "run\n" {
		t.Errorf("Run after resync = %q, %v", got, err)
	}
}

func TestBusyboxCancelReturnsPromptly(t *testing.T) {
	c := startBusybox(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, "sleep 5")
		errc <- err
	}()
	if _, err := c.tailUntil(ctxT(t), "sleep 5"); err != nil { // the shell has it
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Run did not return after cancel")
	}
}

// tailUntil polls Tail until it contains s (test helper, bounded by ctx).
func (c *Console) tailUntil(ctx context.Context, s string) (string, error) {
	for {
		if tail := c.Tail(); strings.Contains(tail, s) {
			return tail, nil
		}
		select {
		case <-ctx.Done():
			return c.Tail(), ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestBusyboxRebootAndNoise: the shell prints a boot log with line noise
// and is replaced by a fresh one, as a device that reboots; a background
// job later sprays noise between commands.
func TestBusyboxRebootAndNoise(t *testing.T) {
	c := startBusybox(t, Options{SyncEvery: 200 * time.Millisecond})
	reboot := `i=0; while [ $i -lt 30 ]; do echo "[    $i.000000] boot: probing $i"; i=$((i+1)); done; ` +
		`printf '\000\377\376\033[0m\233 baud garbage\r\n'; sleep 0.3; exec ` + busybox + ` sh -i`
	if err := c.Send(ctxT(t), reboot+"\n"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, c)
	if got, err := c.Run(ctxT(t), "echo booted"); err != nil || got != "booted\n" {
		t.Errorf("Run after reboot = %q, %v", got, err)
	}

	// Noise while the console is idle, after the prompt: the next command
	// must not see it.
	shellOK(t, c, `(sleep 0.1; printf '\377\376\001 noise\r\n\033[1mm\157re\377') &`)
	if _, err := c.tailUntil(ctxT(t), "more"); err != nil { // not in the echo, which has m\157re
		t.Fatal(err)
	}
	for i := range 5 {
		if res := shellOK(t, c, "echo round; sleep 0.05"); res.Output != "round\n" {
			t.Errorf("round %d: %+v", i, res)
		}
	}
	mustSync(t, c)
	if got, err := c.Run(ctxT(t), "echo calm"); err != nil || got != "calm\n" {
		t.Errorf("Run after noise = %q, %v", got, err)
	}
}

func TestBusyboxTranscriptRedaction(t *testing.T) {
	const pin = "Zq7Xk2Pm9"
	red := NewRedactor(pin)
	var buf syncBuffer
	tr := NewTranscript(&buf, red)
	c := startBusybox(t, Options{Transcript: tr, Redactor: red})
	// The PIN goes out in the command, comes back in the echo and in the
	// output, in whatever pieces the pty delivers.
	res := shellOK(t, c, "p="+pin+"; echo \"pin=$p\"; echo \"$p\" | cut -c1-4")
	if res.Output != "pin="+pin+"\n"+pin[:4]+"\n" {
		t.Errorf("Output = %q", res.Output)
	}
	tr.Note("step: %s", "done")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, pin) {
		t.Errorf("transcript leaks the PIN:\n%s", out)
	}
	recs, notes := parse(t, out)
	if len(notes) != 1 {
		t.Errorf("notes = %q", notes)
	}
	rx := joined(recs, "bb", "<")
	if strings.Count(rx, Redacted) < 2 || !strings.Contains(rx, "@@\r\npin="+Redacted+"\r\n") {
		t.Errorf("received side = %q", rx)
	}
	raw := len(rx) - strings.Count(rx, Redacted)*(len(Redacted)-len(pin))
	if s := c.Stats(); s.RxBytes < int64(raw) || s.TxBytes == 0 {
		t.Errorf("Stats = %+v for %d bytes received", s, len(rx))
	}
}

// BenchmarkBusyboxShell measures one Shell round trip (command, markers,
// exit status) against a real busybox on a pty.
func BenchmarkBusyboxShell(b *testing.B) {
	for _, reply := range []bool{false, true} {
		b.Run(fmt.Sprintf("CursorReply=%v", reply), func(b *testing.B) {
			benchShell(b, startBusybox(b, Options{CursorReply: reply}))
		})
	}
}

func benchShell(b *testing.B, c *Console) {
	ctx := context.Background()
	before := c.Stats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := c.Shell(ctx, "true")
		if err != nil || res.Status != 0 {
			b.Fatalf("Shell: %+v, %v", res, err)
		}
	}
	b.StopTimer()
	s := c.Stats()
	b.ReportMetric(float64(s.TxBytes-before.TxBytes+s.RxBytes-before.RxBytes)/float64(b.N), "linebytes/op")
}

// BenchmarkBusyboxRun measures Run of a short command.
func BenchmarkBusyboxRun(b *testing.B) {
	c := startBusybox(b, Options{})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out, err := c.Run(ctx, "echo x"); err != nil || !bytes.Equal([]byte(out), []byte("x\n")) {
			b.Fatalf("Run = %q, %v", out, err)
		}
	}
}

// TestBusyboxSyncLine: with a shell comment as SyncLine, Sync ends on the prompt after its
// probe's echo without any quiet period (Settle is an hour here, so waiting for quiet would
// hang the test), also when the probe is typed while a command still runs (the kernel echoes it
// at once, the shell reads it again later) and across a shell that replaces itself (a reboot).
func TestBusyboxSyncLine(t *testing.T) {
	t.Parallel()
	c := startBusybox(t, Options{SyncLine: "#", Settle: time.Hour, SyncEvery: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Shell(ctx, "sleep 1; echo late"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shell(sleep) = %v, want a timeout", err)
	}
	mustSync(t, c)
	if got, err := c.Run(ctxT(t), "echo run"); err != nil || got != "run\n" {
		t.Errorf("Run after Sync past a running command = %q, %v", got, err)
	}
	if err := c.Send(ctxT(t), "echo going down; sleep 0.3; exec "+busybox+" sh -i\n"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, c)
	if got, err := c.Run(ctxT(t), "echo booted"); err != nil || got != "booted\n" {
		t.Errorf("Run after a new shell = %q, %v", got, err)
	}
	mustSync(t, c) // at an idle prompt
	if res := shellOK(t, c, "echo fresh"); res.Output != "fresh\n" {
		t.Errorf("Shell after Sync: %+v", res)
	}
}

// TestBusyboxSyncLineFreshConnection: a Console opened on a shell that already shows its prompt
// has seen no prompt before its probe's echo; Sync types a second probe at the prompt that came
// and needs no quiet period either (Settle is an hour).
func TestBusyboxSyncLineFreshConnection(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("no %s: %v", busybox, err)
	}
	cmd := exec.Command(busybox, "sh", "-i")
	cmd.Env = []string{"PS1=hil$ ", "PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "TERM=dumb"}
	cmd.Dir = t.TempDir()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatalf("starting busybox on a pty: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		f.Close()
		cmd.Wait()
	})
	// The harness connects after the shell printed its prompt: read it away first.
	var seen []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(seen, []byte("hil$ ")) {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatalf("reading the banner: %v (got %q)", err, seen)
		}
		seen = append(seen, buf[:n]...)
	}
	c := New(f, Options{Name: "bb", Prompt: busyboxPrompt, SyncLine: "#", Settle: time.Hour})
	t.Cleanup(func() { c.Close() })
	mustSync(t, c)
	if res := shellOK(t, c, "echo fresh"); res.Output != "fresh\n" {
		t.Errorf("Shell after Sync: %+v", res)
	}
	if got, err := c.Run(ctxT(t), "echo run"); err != nil || got != "run\n" {
		t.Errorf("Run after Sync = %q, %v", got, err)
	}
}

// TestCursorAnswerBeforeTheNextCommand: the answer to a cursor query reaches the device before
// any command sent after the query was seen. Written after it, the answer lands while that
// command runs and busybox's tty echoes it into the command's output (a chain's SHA-256 read
// back as "^[[1;1R421b..." failed provisioning under load).
func TestCursorAnswerBeforeTheNextCommand(t *testing.T) {
	t.Parallel()
	for i := range 200 {
		toHost, fromHost := newBufPipe(), newBufPipe()
		c := New(struct {
			io.Reader
			io.Writer
		}{toHost, fromHost}, Options{CursorReply: true})
		toHost.Write([]byte("$ \x1b[6n"))
		if _, err := c.Expect(ctxT(t), regexp.MustCompile(`\$ $`)); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctxT(t), "cmd\n"); err != nil {
			t.Fatal(err)
		}
		want := "\x1b[1;1Rcmd\n"
		got := make([]byte, 0, len(want))
		buf := make([]byte, 64)
		for len(got) < len(want) {
			n, err := fromHost.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:n]...)
		}
		if string(got) != want {
			t.Fatalf("run %d: the device read %q, want the cursor answer first: %q", i, got, want)
		}
		c.Close()
		toHost.Close()
		fromHost.Close()
	}
}

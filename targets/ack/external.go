package ack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"hilbench/harness/console"
	"hilbench/harness/device"
)

// External mode defaults.
const (
	DefaultExternalTimeout = 10 * time.Minute
	ExternalSource         = "vendor-tool" // transcript source of the tool's output
	killGrace              = 2 * time.Second
	tailLines              = 20
)

// ErrExternalFailed matches every failure of the vendor tool (exit status, patterns, timeout).
var ErrExternalFailed = errors.New("vendor tool failed")

// ExternalConfig runs the module vendor's provisioning tool instead of the native dialect.
type ExternalConfig struct {
	// Command is the argv template; each element may contain {port}, {product_config},
	// {pin_file}, {target} and {dsn}, replaced by ExternalParams.
	Command []string
	// SuccessPatterns: at least one must match a line of the tool's output (an exit status alone
	// is not trusted). FailurePatterns: none may match.
	SuccessPatterns, FailurePatterns []*regexp.Regexp
	Timeout                          time.Duration // default DefaultExternalTimeout
	Env                              []string      // added to this process's environment
	// KillGrace is how long a timed-out tool has between SIGTERM and SIGKILL, and how long
	// output is still read from a straggler that left the group; default 2 s.
	KillGrace time.Duration
}

// ExternalParams are the values substituted into the command template.
type ExternalParams struct {
	Target        string
	Port          string // the module's serial port: the caller must have closed it (see RunExternal)
	ProductConfig string
	PINFile       string // only the path is handed on; the content is redacted if the tool prints it
	DSN           string
}

// ExternalResult is what a successful run of the tool showed.
type ExternalResult struct {
	Argv     []string // as run (redacted)
	Matched  string   // the output line a success pattern matched (redacted)
	Duration time.Duration
}

// ExternalError is a failed run: why, and the last lines of the tool's output (redacted).
type ExternalError struct {
	Reason string
	Tail   []string
}

func (e *ExternalError) Error() string {
	if len(e.Tail) == 0 {
		return e.Reason + "; the tool printed nothing"
	}
	return fmt.Sprintf("%s; last %d lines of its output:\n  %s", e.Reason, len(e.Tail), strings.Join(e.Tail, "\n  "))
}
func (e *ExternalError) Is(target error) bool { return target == ErrExternalFailed }

var placeholderRE = regexp.MustCompile(`\{(port|product_config|pin_file|target|dsn)\}`)

// ExpandCommand substitutes the placeholders in each argv element. A placeholder whose value is
// empty is an error: the tool would get a silently wrong argument.
func ExpandCommand(tmpl []string, p ExternalParams) ([]string, error) {
	if len(tmpl) == 0 || tmpl[0] == "" {
		return nil, errors.New("external command is empty")
	}
	values := map[string]string{"port": p.Port, "product_config": p.ProductConfig, "pin_file": p.PINFile, "target": p.Target, "dsn": p.DSN}
	argv := make([]string, len(tmpl))
	var missing []string
	for i, a := range tmpl {
		argv[i] = placeholderRE.ReplaceAllStringFunc(a, func(m string) string {
			key := m[1 : len(m)-1]
			if values[key] == "" {
				missing = append(missing, m)
			}
			return values[key]
		})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("external command uses %s but no value was given", strings.Join(missing, ", "))
	}
	return argv, nil
}

// RunExternal runs the vendor tool for one module. The caller must close the module's serial port
// first (the tool opens it itself) and reopen it afterwards for the native read-back (Verify).
//
// The tool runs in its own process group; on timeout or cancellation the whole group gets
// SIGTERM, then SIGKILL after 2 s, and whatever the tool leaves running after it exits is killed
// too, so nothing holds the port. Every output line (stdout and stderr) goes to the transcript as
// source "vendor-tool". Success needs exit status 0, a line matching a success pattern and no line
// matching a failure pattern. The PIN file's content is never read into anything but a redactor:
// if the tool prints it, the transcript and errors show [REDACTED].
func RunExternal(ctx context.Context, cfg ExternalConfig, p ExternalParams, tr *console.Transcript, red *console.Redactor) (*ExternalResult, error) {
	fail := func(err error) error { return device.Fail(p.Target, StepExternal, err) }
	if len(cfg.SuccessPatterns) == 0 {
		return nil, fail(errors.New("no success patterns: an exit status alone is not trusted"))
	}
	argv, err := ExpandCommand(cfg.Command, p)
	if err != nil {
		return nil, fail(err)
	}
	lineRed := console.NewRedactor()
	if p.PINFile != "" {
		if pin, err := os.ReadFile(p.PINFile); err == nil {
			lineRed.Add(strings.TrimSpace(string(pin)))
		}
	}
	redact := func(s string) string { return lineRed.Redact(red.Redact(s)) }
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultExternalTimeout
	}
	grace := cfg.KillGrace
	if grace <= 0 {
		grace = killGrace
	}
	shown := make([]string, len(argv))
	for i, a := range argv {
		shown[i] = redact(a)
	}
	if tr != nil {
		tr.Note("%s: external: running %q (timeout %v)", p.Target, shown, timeout)
	}

	r, w, err := os.Pipe()
	if err != nil {
		return nil, fail(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Stdout, cmd.Stderr = w, w // one pipe: lines keep their order
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fail(fmt.Errorf("starting %q: %w", shown[0], err))
	}
	w.Close()
	pgid := cmd.Process.Pid

	out := make(chan outputScan, 1)
	go func() { out <- scanOutput(r, cfg, redact, tr) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var waitErr error
	var killed string
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case waitErr = <-exited:
	case <-timer.C:
		killed = fmt.Sprintf("timed out: it hung and was killed after %v", timeout)
		waitErr = killGroup(pgid, exited, grace)
	case <-ctx.Done():
		killed = fmt.Sprintf("was killed: %v", ctx.Err())
		waitErr = killGroup(pgid, exited, grace)
	}
	// Whatever the tool left behind goes too: it would hold the port and the output pipe.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	var scan outputScan
	select {
	case scan = <-out:
	case <-time.After(grace): // a straggler that left the group still holds the pipe
		r.Close()
		scan = <-out
	}
	r.Close()
	dur := time.Since(start)

	ee := &ExternalError{Tail: scan.tail}
	switch {
	case killed != "":
		ee.Reason = fmt.Sprintf("%s %s", shown[0], killed)
	case waitErr != nil:
		ee.Reason = fmt.Sprintf("%s failed: %v", shown[0], waitErr)
	case scan.failure != "":
		ee.Reason = fmt.Sprintf("%s exited 0 but printed a failure line: %q", shown[0], scan.failure)
	case scan.success == "":
		ee.Reason = fmt.Sprintf("%s exited 0 but printed no line matching a success pattern (%s)", shown[0], patternList(cfg.SuccessPatterns))
	case scan.err != nil:
		ee.Reason = fmt.Sprintf("reading %s's output: %v", shown[0], scan.err)
	default:
		if tr != nil {
			tr.Note("%s: external: succeeded in %v: %q", p.Target, dur.Round(time.Millisecond), scan.success)
		}
		return &ExternalResult{Argv: shown, Matched: scan.success, Duration: dur}, nil
	}
	if tr != nil {
		tr.Note("%s: external: %s", p.Target, ee.Reason)
	}
	return nil, fail(ee)
}

// killGroup sends SIGTERM to the process group, then SIGKILL after the grace time.
func killGroup(pgid int, exited <-chan error, grace time.Duration) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return <-exited
}

type outputScan struct {
	tail             []string
	success, failure string // first matching lines, redacted
	err              error
}

// scanOutput records each line and checks it against the patterns.
func scanOutput(r io.Reader, cfg ExternalConfig, redact func(string) string, tr *console.Transcript) outputScan {
	var s outputScan
	br := bufio.NewReader(r)
	for {
		raw, err := br.ReadString('\n')
		if raw != "" {
			shown := redact(raw)
			if tr != nil {
				tr.Record(ExternalSource, console.Received, []byte(shown))
			}
			line := strings.TrimRight(raw, "\r\n")
			shownLine := strings.TrimRight(shown, "\r\n")
			if s.failure == "" && anyMatch(cfg.FailurePatterns, line) {
				s.failure = shownLine
			}
			if s.success == "" && anyMatch(cfg.SuccessPatterns, line) {
				s.success = shownLine
			}
			s.tail = append(s.tail, shownLine)
			if len(s.tail) > tailLines {
				s.tail = s.tail[1:]
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				s.err = err
			}
			return s
		}
	}
}

func anyMatch(res []*regexp.Regexp, line string) bool {
	for _, re := range res {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}

func patternList(res []*regexp.Regexp) string {
	var s []string
	for _, re := range res {
		s = append(s, fmt.Sprintf("%q", re.String()))
	}
	return strings.Join(s, ", ")
}

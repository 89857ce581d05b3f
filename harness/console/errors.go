package console

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinels for errors.Is.
var (
	// ErrClosed: the Console was closed.
	ErrClosed = errors.New("console closed")
	// ErrLineTooLong: a command line longer than Options.MaxLine; the
	// device's line editor would truncate it (busybox: ~1024 bytes).
	ErrLineTooLong = errors.New("command line too long")
	// ErrBadLine: a command line with a newline or another control
	// character, which a line editor would act on (TAB completes, ^D exits).
	ErrBadLine = errors.New("command line contains a control character")
	// ErrGarbled: the device's answer lacks what the protocol requires
	// (e.g. Shell's begin marker before its end marker).
	ErrGarbled = errors.New("console output garbled")
	// ErrNoStatus: the shell printed its prompt without running the end of
	// Shell's line, as it does when it cannot parse the command.
	ErrNoStatus = errors.New("shell gave no exit status")
)

// TimeoutError reports a wait that hit the context deadline. Command and
// Tail are redacted.
type TimeoutError struct {
	Target  string        // Options.Name
	Command string        // what was sent last ("" for none)
	Waiting string        // what did not come: "prompt", "exit status", `match for "re"`
	Elapsed time.Duration // since the operation started
	Tail    string        // last output (Console.Tail)
}

func (e *TimeoutError) Error() string {
	s := fmt.Sprintf("%s: no %s within %s", e.Target, e.Waiting, roundDuration(e.Elapsed))
	if e.Command != "" {
		s += fmt.Sprintf(" after %q", e.Command)
	}
	return s + fmt.Sprintf("; last output: %q", e.Tail)
}

// Unwrap makes errors.Is(err, context.DeadlineExceeded) hold.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// roundDuration keeps messages readable: "5s", "1.2s", "250ms".
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

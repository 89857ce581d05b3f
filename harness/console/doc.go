// Package console drives a device's text console (a busybox shell or a
// simpler command prompt on a serial line) expect-style over any
// io.ReadWriter, and records what was said in a redacted transcript.
//
// # Concepts
//
//   - Cleaned text: what every match runs against. ANSI escape sequences are
//     dropped (busybox sends ESC[6n after each prompt), CR LF and the CR CR
//     LF that busybox inserts when it wraps its echo at 80 columns become LF,
//     other control characters go. See cleaner.
//   - Prompt: Options.Prompt must match at the end of the cleaned text
//     received so far; then the device waits for input. Use (?m) for ^.
//     Noise or a kernel message may land right after a prompt: once the
//     line has been quiet for Options.Settle, a prompt followed by other
//     text on its last lines counts too (Shell needs no wait: its prompt
//     comes right after the end marker).
//   - One line at a time: a shell echoes typed-ahead input out of order, so
//     Run, Shell and Sync send one line and wait for the prompt before the
//     next; a Console runs one operation at a time. Lines are limited to
//     Options.MaxLine bytes (the busybox line editor holds ~1024) and may not
//     hold control characters (TAB would complete, ^D would exit).
//   - Echo: Run strips the device's echo of the line, tolerating wrap breaks
//     and noise before it, and works on devices that do not echo. Once a
//     device has echoed, Run only takes a prompt after the echo, so a late
//     prompt of a timed-out command is not mistaken for this one's; on a
//     device that never echoes that protection is missing (use Shell, or
//     Sync after a timeout).
//   - Shell markers: Shell wraps the command as
//     echo '@@'"B<n>"'@@'; eval '<cmd>'; echo '@@'"E<n>:$?"'@@'
//     The echo of that line never looks like the markers' output (@@B<n>@@,
//     @@E<n>:<status>@@) because of the quotes, <n> changes every call so
//     late output of a timed-out command is never taken for a later one, and
//     eval keeps a '#' or a trailing '&' in cmd from swallowing the end
//     marker.
//   - Sync: discard whatever is pending (boot log, noise), send a newline,
//     wait for the prompt and then for a quiet line (Options.Settle), so
//     several queued prompts do not leak into the next command. It retries
//     every Options.SyncEvery until ctx ends, so a long deadline rides out a
//     reboot. With Options.SyncLine (a shell comment, "#") Sync types that
//     line with a number of its own instead: a prompt, the probe's echo and
//     a prompt right after it frame the newest prompt unambiguously, so no
//     quiet period is waited for. The prompt before the echo tells the line
//     editor's echo from the kernel's echo of a line typed while a command
//     still ran.
//   - Errors: deadlines give *TimeoutError (target, command, what was
//     awaited, elapsed, tail of output; errors.Is context.DeadlineExceeded);
//     sentinels ErrClosed, ErrLineTooLong, ErrBadLine, ErrNoStatus,
//     ErrGarbled; a failed read of rw is wrapped (errors.Is io.EOF).
//   - Secrets: a Redactor replaces registered secrets with [REDACTED] in the
//     transcript, in errors and in Tail. Values returned to the caller (Run
//     output, Expect text) are not redacted: the caller asked for them.
//   - Transcript: every byte both ways, timestamped, one %q-quoted record per
//     line; see Transcript for how secrets split across reads stay redacted.
package console

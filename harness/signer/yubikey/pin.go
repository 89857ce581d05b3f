package yubikey

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// PIN and PUK lengths a YubiKey accepts (Yubico, "PIV PIN and PUK": 6 to 8
// characters; SP 800-73-4 Part 2, 2.4.3 pads them to 8 bytes with 0xFF).
const (
	MinPINLength = 6
	MaxPINLength = 8
)

// maxPINFileSize bounds what readPINFile reads: a PIN, a line end and room
// to report a file holding something else.
const maxPINFileSize = 64

// secret holds a PIN or PUK. Every fmt verb prints "[redacted]", so a secret
// that reaches a log or an error by mistake shows nothing.
type secret struct{ s string }

func (secret) String() string               { return "[redacted]" }
func (secret) GoString() string             { return "[redacted]" }
func (secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, "[redacted]") }
func (s secret) reveal() string             { return s.s }
func (s secret) empty() bool                { return s.s == "" }
func newSecret(s string) secret             { return secret{s: s} }
func (secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// ValidatePIN checks that s can be a YubiKey PIN or PUK: 6 to 8 printable
// ASCII characters, no spaces. The CLI calls it on what an operator typed
// before anything is sent to a key. The error never contains s.
func ValidatePIN(s string) error {
	if p := pinProblem(s); p != "" {
		return fmt.Errorf("%w: %s", ErrConfig, p)
	}
	return nil
}

// pinProblem describes what is wrong with a PIN, without quoting it.
func pinProblem(s string) string {
	switch n := len(s); {
	case n == 0:
		return "the PIN is empty"
	case n < MinPINLength || n > MaxPINLength:
		return fmt.Sprintf("the PIN has %d characters; a YubiKey PIN has %d to %d", n, MinPINLength, MaxPINLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n' || c == '\r':
			return fmt.Sprintf("the PIN has a line break at character %d: put the PIN alone on one line", i+1)
		case c == ' ' || c == '\t':
			return fmt.Sprintf("the PIN has white space at character %d", i+1)
		case c < 0x20 || c == 0x7F:
			return fmt.Sprintf("the PIN has a control character at character %d", i+1)
		case c > 0x7E:
			return fmt.Sprintf("the PIN has a non-ASCII byte at character %d", i+1)
		}
	}
	return ""
}

// readPINFile reads a PIN file: the PIN alone, optionally followed by one
// line end ("\n" or "\r\n"), in a file only its owner can access. Anything
// else is refused with a *PINFileError before any card is touched.
func readPINFile(path string) (secret, error) {
	if path == "" {
		return secret{}, &PINFileError{Problem: "no PIN file configured"}
	}
	f, err := os.Open(path)
	if err != nil {
		return secret{}, &PINFileError{Path: path, Problem: "cannot open it", Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return secret{}, &PINFileError{Path: path, Problem: "cannot stat it", Err: err}
	}
	if !fi.Mode().IsRegular() {
		return secret{}, &PINFileError{Path: path, Problem: fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type())}
	}
	// Windows has no Unix permission bits; os.Stat reports 0666 there.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return secret{}, &PINFileError{Path: path, Insecure: true, Mode: fi.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPINFileSize+1))
	if err != nil {
		return secret{}, &PINFileError{Path: path, Problem: "cannot read it", Err: err}
	}
	defer clear(data)
	if len(data) > maxPINFileSize {
		return secret{}, &PINFileError{Path: path, Problem: fmt.Sprintf("is longer than %d bytes: a PIN file holds the PIN alone", maxPINFileSize)}
	}
	pin, err := parsePINFile(data)
	if err != nil {
		return secret{}, &PINFileError{Path: path, Problem: err.Error()}
	}
	return newSecret(pin), nil
}

// parsePINFile strips exactly one trailing line end and checks the rest.
func parsePINFile(data []byte) (string, error) {
	body := data
	switch {
	case len(body) >= 2 && body[len(body)-2] == '\r' && body[len(body)-1] == '\n':
		body = body[:len(body)-2]
	case len(body) >= 1 && body[len(body)-1] == '\n':
		body = body[:len(body)-1]
	}
	// White space around the PIN is the usual editing slip (echo " 123456" > pin, an editor
	// that adds a trailing blank): say so rather than "white space at character N".
	if len(body) > 0 && (body[0] == ' ' || body[0] == '\t') {
		return "", errors.New("starts with white space (a leading space or tab before the PIN): a PIN file holds the PIN alone, with nothing before it; remove the leading space")
	}
	if n := len(body); n > 0 && (body[n-1] == ' ' || body[n-1] == '\t') {
		return "", errors.New("has white space after the PIN (a trailing space or tab; only one line end may follow the PIN): remove the trailing space")
	}
	for i, c := range body {
		if c == '\n' || c == '\r' {
			return "", fmt.Errorf("has more than one line (a line break at byte %d): put the PIN alone on one line, with at most one line end", i+1)
		}
	}
	if p := pinProblem(string(body)); p != "" {
		return "", errors.New(p)
	}
	return string(body), nil
}

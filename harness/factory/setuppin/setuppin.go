// Package setuppin makes the setup PIN of the FFS manufacturing guide: 9 characters from
// [a-zA-Z0-9], drawn from a cryptographic random source and from nothing else on the label.
//
// # Concepts
//
//   - Rejection sampling: each random byte is cut to 6 bits (0..63) and the two values past the
//     62-character alphabet are thrown away, so every character is equally likely. Taking
//     a byte modulo 62 would not be: 256 is not a multiple of 62, so the first 8 characters
//     would come up 5 times in 256 and the others 4 times.
//   - One PIN per device, kept: the ledger stores it (ledger.Store.SetupPIN calls New once for
//     a device key and hands back the recorded PIN ever after). A PIN is a secret: it goes on
//     the label and the device, never in a log, transcript, report or error message.
package setuppin

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Length is the number of characters of a setup PIN.
const Length = 9

// Alphabet is the setup PIN's character set, [a-zA-Z0-9]; a character's index is its value.
const Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// New returns a fresh PIN from crypto/rand.
func New() (string, error) { return From(rand.Reader) }

// From returns a PIN drawn from r by rejection sampling. r must be a cryptographic source in
// production (New); tests pass others.
func From(r io.Reader) (string, error) {
	pin := make([]byte, 0, Length)
	// 16 bytes give 9 accepted characters unless more than 7 of 16 are rejected (1 in 32 each).
	buf := make([]byte, 16)
	for len(pin) < Length {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("setup PIN: reading random bytes: %w", err)
		}
		for _, b := range buf {
			v := b & 0x3f
			if int(v) >= len(Alphabet) {
				continue // 62 and 63: rejected, or the first two characters would be twice as likely
			}
			pin = append(pin, Alphabet[v])
			if len(pin) == Length {
				break
			}
		}
	}
	return string(pin), nil
}

// ErrInvalid: a string that is not a setup PIN.
var ErrInvalid = errors.New("not a setup PIN")

// Check reports whether pin has the setup PIN's form. Its error never repeats the PIN.
func Check(pin string) error {
	if len(pin) != Length {
		return fmt.Errorf("%w: %d characters, want %d", ErrInvalid, len(pin), Length)
	}
	for i := 0; i < len(pin); i++ {
		c := pin[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return fmt.Errorf("%w: character %d is outside [a-zA-Z0-9]", ErrInvalid, i+1)
		}
	}
	return nil
}

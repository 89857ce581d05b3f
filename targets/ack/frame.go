package ack

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"sort"
	"strings"
)

// Dialect is the frame dialect this driver speaks (PROTOCOL.md).
const Dialect = "HA1"

// Frame limits from PROTOCOL.md.
const (
	MaxFrameLen   = 1024 // bytes of one frame line, LF included
	MaxPayloadLen = 700  // decoded payload bytes
	maxVerbLen    = 16   // PROTOCOL.md said 12, which FACTORY_RESET (13) exceeds
)

// Event seq: frames the module sends on its own (BOOT), and NAKs for an unreadable seq.
const eventSeq = 0

// ErrDamagedFrame matches every *FrameError: a line that starts a frame but does not parse.
var ErrDamagedFrame = errors.New("damaged frame")

// ErrWrongDialect matches every *DialectError.
var ErrWrongDialect = errors.New("wrong frame dialect")

// FrameError is a damaged frame: what was wrong with it.
type FrameError struct {
	Reason string
	// Dialect is the other dialect the frame names when its integrity cannot be checked (it does
	// not have HA1's shape): noise, or a module speaking that dialect. Repeats decide (Exchange).
	Dialect string
}

func (e *FrameError) Error() string        { return "damaged frame: " + e.Reason }
func (e *FrameError) Is(target error) bool { return target == ErrDamagedFrame }

// DialectError is a frame of another dialect: the module speaks something else, resending is useless.
type DialectError struct{ Got string }

func (e *DialectError) Error() string {
	return fmt.Sprintf("module speaks %s; hilbench speaks %s", e.Got, Dialect)
}
func (e *DialectError) Is(target error) bool { return target == ErrWrongDialect }

// Frame is one decoded HA1 frame.
type Frame struct {
	Seq     byte
	Verb    string
	Payload []byte
}

func (f Frame) String() string {
	return fmt.Sprintf("%s seq %02X (%d payload bytes)", f.Verb, f.Seq, len(f.Payload))
}

var verbRE = regexp.MustCompile(`^[A-Z_]{1,16}$`)

// Encode returns the frame's line, LF included.
func (f Frame) Encode() ([]byte, error) {
	if !verbRE.MatchString(f.Verb) {
		return nil, fmt.Errorf("verb %q is not 1 to %d of A-Z and _", f.Verb, maxVerbLen)
	}
	if len(f.Payload) > MaxPayloadLen {
		return nil, fmt.Errorf("%s payload is %d bytes, at most %d fit a frame", f.Verb, len(f.Payload), MaxPayloadLen)
	}
	body := fmt.Sprintf("%s|%02X|%s|%s|", Dialect, f.Seq, f.Verb, base64.StdEncoding.EncodeToString(f.Payload))
	line := fmt.Sprintf("!%s%08X\n", body, crc32.ChecksumIEEE([]byte(body)))
	if len(line) > MaxFrameLen {
		return nil, fmt.Errorf("%s frame is %d bytes, at most %d", f.Verb, len(line), MaxFrameLen)
	}
	return []byte(line), nil
}

// ParseLine reads one received line (with or without its CR/LF). A line without "!HA" is a log
// line: ok is false and err nil. Otherwise the frame starts at the last "!HA"; a frame that does
// not parse is a *FrameError, one of another dialect a *DialectError.
func ParseLine(line []byte) (f Frame, ok bool, err error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	i := bytes.LastIndex(line, []byte("!HA"))
	if i < 0 {
		return Frame{}, false, nil
	}
	f, err = parseFrame(line[i+1:])
	return f, true, err
}

// parseFrame parses a frame without its "!" and line end.
func parseFrame(s []byte) (Frame, error) {
	fields := strings.Split(string(s), "|")
	damaged := func(format string, args ...any) (Frame, error) {
		return Frame{}, &FrameError{Reason: fmt.Sprintf(format, args...)}
	}
	// Another dialect is told apart from a damaged HA1 frame. A frame of HA1's shape whose CRC
	// holds names another dialect for certain. One whose CRC fails is damage: noise may hit the
	// dialect field too. A frame of another shape cannot be checked, so it is damage that names a
	// suspected dialect; only the same name in several answers makes it a mismatch (Exchange).
	if fields[0] != Dialect {
		if isDialectName(fields[0]) {
			if hasHA1Shape(fields) {
				if crcMatches(s, fields) {
					return Frame{}, &DialectError{Got: fields[0]}
				}
				return damaged("dialect field %q is not %s and the crc fails", fields[0], Dialect)
			}
			return Frame{}, &FrameError{Reason: fmt.Sprintf("a frame naming dialect %q, not in %s's shape", fields[0], Dialect), Dialect: fields[0]}
		}
		if len(fields[0]) > 8 {
			return damaged("dialect field %.8q... is not %s", fields[0], Dialect)
		}
		return damaged("dialect field %q is not %s", fields[0], Dialect)
	}
	if len(s)+2 > MaxFrameLen { // "!" and LF
		return damaged("frame is %d bytes, at most %d", len(s)+2, MaxFrameLen)
	}
	if len(fields) != 5 {
		return damaged("%d fields, want 5", len(fields))
	}
	seq, ok := upperHex(fields[1], 2)
	if !ok {
		return damaged("seq %q is not 2 uppercase hex digits", fields[1])
	}
	crc, ok := upperHex(fields[4], 8)
	if !ok {
		return damaged("crc %q is not 8 uppercase hex digits", fields[4])
	}
	if got := crc32.ChecksumIEEE(s[:len(s)-len(fields[4])]); uint32(crc) != got {
		return damaged("crc is %08X, the frame's bytes give %08X", crc, got)
	}
	if !verbRE.MatchString(fields[2]) {
		return damaged("verb %q is not 1 to %d of A-Z and _", fields[2], maxVerbLen)
	}
	payload, err := base64.StdEncoding.Strict().DecodeString(fields[3])
	if err != nil {
		return damaged("payload is not base64: %v", err)
	}
	if len(payload) > MaxPayloadLen {
		return damaged("payload is %d bytes, at most %d", len(payload), MaxPayloadLen)
	}
	return Frame{Seq: byte(seq), Verb: fields[2], Payload: payload}, nil
}

var dialectRE = regexp.MustCompile(`^HA[0-9A-Z]{1,6}$`)

func isDialectName(s string) bool { return dialectRE.MatchString(s) }

func hasHA1Shape(fields []string) bool {
	if len(fields) != 5 {
		return false
	}
	_, ok := upperHex(fields[4], 8)
	return ok
}

func crcMatches(s []byte, fields []string) bool {
	crc, _ := upperHex(fields[4], 8)
	return uint32(crc) == crc32.ChecksumIEEE(s[:len(s)-len(fields[4])])
}

// upperHex parses exactly n uppercase hex digits.
func upperHex(s string, n int) (uint64, bool) {
	if len(s) != n {
		return 0, false
	}
	var v uint64
	for _, c := range []byte(s) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

var keyRE = regexp.MustCompile(`^[a-z0-9_]+$`)

// Text is a text payload: key=value lines.
type Text map[string]string

// EncodeText writes key=value lines, keys in the order given (pairs: key, value, key, value...).
func EncodeText(pairs ...string) []byte {
	if len(pairs)%2 != 0 {
		panic("ack.EncodeText: odd number of arguments")
	}
	var b bytes.Buffer
	for i := 0; i < len(pairs); i += 2 {
		b.WriteString(pairs[i] + "=" + pairs[i+1] + "\n")
	}
	return b.Bytes()
}

// ParseText reads a text payload. Keys must be [a-z0-9_]+; a value runs to the line's end and may
// contain "=". A missing LF after the last line is tolerated.
func ParseText(p []byte) (Text, error) {
	t := Text{}
	s := strings.TrimSuffix(string(p), "\n")
	if s == "" {
		return t, nil
	}
	for n, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || !keyRE.MatchString(k) {
			return nil, fmt.Errorf("text payload line %d %q is not key=value with a key of a-z, 0-9 and _", n+1, line)
		}
		t[k] = v
	}
	return t, nil
}

// String lists the pairs sorted by key, for errors.
func (t Text) String() string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", k, t[k])
	}
	return b.String()
}

// EncodeChunk is a binary payload: 4-byte big-endian offset, then the bytes.
func EncodeChunk(off uint32, data []byte) []byte {
	p := make([]byte, 4+len(data))
	binary.BigEndian.PutUint32(p, off)
	copy(p[4:], data)
	return p
}

// DecodeChunk splits a binary payload into its offset and bytes.
func DecodeChunk(p []byte) (off uint32, data []byte, err error) {
	if len(p) < 4 {
		return 0, nil, fmt.Errorf("binary payload is %d bytes, shorter than its 4-byte offset", len(p))
	}
	return binary.BigEndian.Uint32(p), p[4:], nil
}

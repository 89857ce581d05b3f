package usb

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Recordings of control transfers are text, one transfer per line; '#' starts a comment:
//
//	out RT RQ VALUE INDEX DATA [-> RESULT]   host-to-device; DATA is hex, "-" when empty
//	in  RT RQ VALUE INDEX LEN -> DATA|RESULT device-to-host; LEN is wLength (decimal), DATA the answer
//	reset [-> RESULT]                         a USB reset (Device.Reset)
//
// RT (bmRequestType) and RQ (bRequest) are two hex digits, VALUE and INDEX four; RESULT is
// STALL (ErrStall), GONE (ErrDeviceGone) or "ERR text" (any other error). For example:
//
//	out 21 01 0000 0000 0001020304
//	in  a1 03 0000 0000 6 -> 000500000400
//	out 21 01 0005 0000 ffff -> STALL
//
// A recording made on a bench with Record replays in CI with Playback.

// ErrPlaybackMismatch is a transfer that differs from the recording.
var ErrPlaybackMismatch = errors.New("playback: transfer differs from the recording")

type step struct {
	line     int
	kind     string // "out", "in", "reset"
	rType    uint8
	req      uint8
	val, idx uint16
	data     []byte // out: what the host sent; in: what the device answered
	length   int    // in: wLength
	result   string // "", "STALL", "GONE", "ERR text"
}

func (s step) String() string {
	switch s.kind {
	case "reset":
		return "reset" + resultSuffix(s.result)
	case "in":
		if s.result != "" {
			return fmt.Sprintf("in %02x %02x %04x %04x %d -> %s", s.rType, s.req, s.val, s.idx, s.length, s.result)
		}
		return fmt.Sprintf("in %02x %02x %04x %04x %d -> %s", s.rType, s.req, s.val, s.idx, s.length, hexOrDash(s.data))
	}
	return fmt.Sprintf("out %02x %02x %04x %04x %s%s", s.rType, s.req, s.val, s.idx, hexOrDash(s.data), resultSuffix(s.result))
}

func resultSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " -> " + r
}

func hexOrDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

// short shows a step for an error message, long data cut.
func short(s step) string {
	t := s.String()
	if len(t) > 120 {
		t = t[:100] + fmt.Sprintf("... (%d data bytes)", len(s.data))
	}
	return t
}

func resultError(r string) error {
	switch {
	case r == "":
		return nil
	case r == "STALL":
		return ErrStall
	case r == "GONE":
		return ErrDeviceGone
	}
	return errors.New(strings.TrimPrefix(r, "ERR "))
}

func errorResult(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrStall):
		return "STALL"
	case errors.Is(err, ErrDeviceGone):
		return "GONE"
	}
	return "ERR " + strings.Join(strings.Fields(err.Error()), " ")
}

// Playback is a Device that answers from a recording and fails on the first transfer that
// differs from it.
type Playback struct {
	mu    sync.Mutex
	steps []step
	pos   int
	err   error // the first mismatch; sticky
}

// LoadPlayback reads a recording.
func LoadPlayback(r io.Reader) (*Playback, error) {
	p := &Playback{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseStep(line)
		if err != nil {
			return nil, fmt.Errorf("recording line %d: %w", n, err)
		}
		s.line = n
		p.steps = append(p.steps, s)
	}
	return p, sc.Err()
}

// LoadPlaybackFile reads a recording from a file.
func LoadPlaybackFile(path string) (*Playback, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := LoadPlayback(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func parseStep(line string) (step, error) {
	head, res, hasRes := strings.Cut(line, "->")
	res = strings.TrimSpace(res)
	f := strings.Fields(head)
	s := step{kind: f[0]}
	if s.kind == "reset" {
		if len(f) != 1 {
			return s, fmt.Errorf("reset takes no fields")
		}
		s.result = res
		return s, checkResult(res)
	}
	if (s.kind != "out" && s.kind != "in") || len(f) != 6 {
		return s, fmt.Errorf("want out|in RT RQ VALUE INDEX DATA|LEN, got %q", head)
	}
	var vals [4]uint64
	for i, bits := range []int{8, 8, 16, 16} {
		v, err := strconv.ParseUint(f[i+1], 16, bits)
		if err != nil {
			return s, fmt.Errorf("field %d %q: %v", i+2, f[i+1], err)
		}
		vals[i] = v
	}
	s.rType, s.req, s.val, s.idx = uint8(vals[0]), uint8(vals[1]), uint16(vals[2]), uint16(vals[3])
	if (s.rType&0x80 != 0) != (s.kind == "in") {
		return s, fmt.Errorf("bmRequestType %02x does not match direction %s", s.rType, s.kind)
	}
	var err error
	if s.kind == "out" {
		if s.data, err = parseHex(f[5]); err != nil {
			return s, err
		}
		s.result = res
		return s, checkResult(res)
	}
	if s.length, err = strconv.Atoi(f[5]); err != nil || s.length < 0 || s.length > 0xFFFF {
		return s, fmt.Errorf("wLength %q", f[5])
	}
	if !hasRes {
		return s, fmt.Errorf("in transfer without -> answer")
	}
	if res == "STALL" || res == "GONE" || strings.HasPrefix(res, "ERR ") {
		s.result = res
		return s, nil
	}
	if s.data, err = parseHex(res); err != nil {
		return s, err
	}
	if len(s.data) > s.length {
		return s, fmt.Errorf("answer of %d bytes to wLength %d", len(s.data), s.length)
	}
	return s, nil
}

func parseHex(h string) ([]byte, error) {
	if h == "-" {
		return nil, nil
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("data %q: %v", h, err)
	}
	return b, nil
}

func checkResult(r string) error {
	if r == "" || r == "STALL" || r == "GONE" || strings.HasPrefix(r, "ERR ") {
		return nil
	}
	return fmt.Errorf("result %q: want STALL, GONE or ERR text", r)
}

// next matches got against the next recorded step.
func (p *Playback) next(got step) (step, error) {
	if p.err != nil {
		return step{}, p.err
	}
	if p.pos >= len(p.steps) {
		p.err = fmt.Errorf("%w: transfer %d: got %s, but the recording has only %d transfers",
			ErrPlaybackMismatch, p.pos+1, short(got), len(p.steps))
		return step{}, p.err
	}
	want := p.steps[p.pos]
	cmp := want
	if cmp.kind == "in" {
		cmp.data, cmp.result = nil, ""
	}
	if cmp.kind != got.kind || cmp.rType != got.rType || cmp.req != got.req || cmp.val != got.val ||
		cmp.idx != got.idx || cmp.length != got.length || (cmp.kind == "out" && !bytes.Equal(cmp.data, got.data)) {
		detail := ""
		if cmp.kind == "out" && got.kind == "out" && !bytes.Equal(cmp.data, got.data) {
			i := 0
			for i < len(cmp.data) && i < len(got.data) && cmp.data[i] == got.data[i] {
				i++
			}
			detail = fmt.Sprintf(" (data differs from byte %d: %d bytes, want %d)", i, len(got.data), len(cmp.data))
		}
		p.err = fmt.Errorf("%w: transfer %d (recording line %d):\n  got  %s\n  want %s%s",
			ErrPlaybackMismatch, p.pos+1, want.line, short(got), short(want), detail)
		return step{}, p.err
	}
	p.pos++
	return want, nil
}

// Control replays one transfer.
func (p *Playback) Control(rType, req uint8, val, idx uint16, data []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := step{kind: "out", rType: rType, req: req, val: val, idx: idx}
	if rType&0x80 != 0 {
		got.kind, got.length = "in", len(data)
	} else {
		got.data = data
	}
	want, err := p.next(got)
	if err != nil {
		return 0, err
	}
	if err := resultError(want.result); err != nil {
		return 0, err
	}
	if want.kind == "in" {
		return copy(data, want.data), nil
	}
	return len(data), nil
}

// Reset replays a USB reset.
func (p *Playback) Reset() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want, err := p.next(step{kind: "reset"})
	if err != nil {
		return err
	}
	return resultError(want.result)
}

// Done fails when a transfer differed or recorded transfers were left unused.
func (p *Playback) Done() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if p.pos < len(p.steps) {
		return fmt.Errorf("playback: %d of %d recorded transfers not used; next is line %d: %s",
			len(p.steps)-p.pos, len(p.steps), p.steps[p.pos].line, short(p.steps[p.pos]))
	}
	return nil
}

// Recorder passes transfers through to a device and writes them in the recording format.
type Recorder struct {
	mu  sync.Mutex
	c   Control
	w   io.Writer
	err error
}

// Record wraps c; every transfer (and Reset, when c is a Device) is written to w.
func Record(c Control, w io.Writer) *Recorder {
	r := &Recorder{c: c, w: w}
	_, r.err = io.WriteString(w, "# hilbench USB control transfers (see harness/usb/playback.go)\n")
	return r
}

// Control does the transfer and records it.
func (r *Recorder) Control(rType, req uint8, val, idx uint16, data []byte) (int, error) {
	n, err := r.c.Control(rType, req, val, idx, data)
	s := step{kind: "out", rType: rType, req: req, val: val, idx: idx, result: errorResult(err)}
	if rType&0x80 != 0 {
		s.kind, s.length = "in", len(data)
		if err == nil {
			s.data = data[:n]
		}
	} else {
		s.data = data
	}
	r.write(s)
	return n, err
}

// Reset resets the device, when it is one, and records it.
func (r *Recorder) Reset() error {
	dev, ok := r.c.(Device)
	if !ok {
		return errors.New("record: the wrapped Control cannot reset")
	}
	err := dev.Reset()
	r.write(step{kind: "reset", result: errorResult(err)})
	return err
}

// Err is the first error writing the recording.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Recorder) write(s step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		_, r.err = io.WriteString(r.w, s.String()+"\n")
	}
}

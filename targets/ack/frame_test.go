package ack_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"hilbench/targets/ack"
)

// handFrame builds a frame line the way PROTOCOL.md says, independently of the driver's encoder.
func handFrame(dialect, seq, verb, b64 string) string {
	body := fmt.Sprintf("%s|%s|%s|%s|", dialect, seq, verb, b64)
	return fmt.Sprintf("!%s%08X\n", body, crc32.ChecksumIEEE([]byte(body)))
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []ack.Frame{
		{Seq: 1, Verb: "HELLO", Payload: ack.EncodeText("dialect", "HA1", "host", "bench")},
		{Seq: 0xFF, Verb: "DATA", Payload: ack.EncodeChunk(512, bytes.Repeat([]byte{0, 0xff, '|', '\n'}, 128))},
		{Seq: 0, Verb: "FACTORY_RESET"},
	} {
		line, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		// Noise before the frame and a CR before the LF change nothing.
		for _, l := range [][]byte{line, append([]byte("I (12) boot !HA garbage "), bytes.Replace(line, []byte("\n"), []byte("\r\n"), 1)...)} {
			got, ok, err := ack.ParseLine(l)
			if err != nil || !ok || got.Seq != f.Seq || got.Verb != f.Verb || !bytes.Equal(got.Payload, f.Payload) {
				t.Errorf("%s: parsed %v ok=%v err=%v", f, got, ok, err)
			}
		}
	}
	// The encoder matches a frame built by hand from the spec.
	line, _ := ack.Frame{Seq: 0x2A, Verb: "READ", Payload: []byte("area=cert\n")}.Encode()
	if want := handFrame("HA1", "2A", "READ", "YXJlYT1jZXJ0Cg=="); string(line) != want {
		t.Errorf("encoded %q, want %q", line, want)
	}
	if _, err := (ack.Frame{Verb: "DATA", Payload: make([]byte, 701)}).Encode(); err == nil {
		t.Error("a 701-byte payload was encoded")
	}
	if _, err := (ack.Frame{Verb: "data"}).Encode(); err == nil {
		t.Error("a lowercase verb was encoded")
	}
}

func TestFrameDamage(t *testing.T) {
	good := handFrame("HA1", "07", "OK", "")
	long := handFrame("HA1", "07", "OK", strings.Repeat("QUFB", 260)) // 1040 payload chars: too long a line
	big := handFrame("HA1", "07", "OK", strings.Repeat("QUFB", 240))  // 720 bytes decoded
	flip := strings.Replace(good, "HA1", "HA3", 1)                    // HA1's shape, CRC fails
	for name, line := range map[string]string{
		"fields":          "!HA1|07|OK|\n",
		"extra field":     strings.Replace(good, "|OK|", "|OK||", 1),
		"seq not hex":     handFrame("HA1", "0G", "OK", ""),
		"seq lowercase":   handFrame("HA1", "0a", "OK", ""),
		"seq one digit":   handFrame("HA1", "7", "OK", ""),
		"verb":            handFrame("HA1", "07", "Ok", ""),
		"verb too long":   handFrame("HA1", "07", "ABCDEFGHIJKLMNOPQ", ""),
		"base64":          handFrame("HA1", "07", "OK", "QUJD*"),
		"base64 padding":  handFrame("HA1", "07", "OK", "QUJ"),
		"crc":             good[:len(good)-2] + "0\n",
		"crc lowercase":   good[:len(good)-9] + strings.ToLower(good[len(good)-9:]),
		"crc short":       good[:len(good)-3] + "\n",
		"too long":        long,
		"payload too big": big,
		"flipped dialect": flip,
		"truncated":       good[:12] + "\n",
	} {
		_, ok, err := ack.ParseLine([]byte(line))
		if !ok || !errors.Is(err, ack.ErrDamagedFrame) || errors.Is(err, ack.ErrWrongDialect) {
			t.Errorf("%s: %q: ok=%v err=%v, want a damaged frame", name, line, ok, err)
		}
	}
	if _, ok, err := ack.ParseLine([]byte(good)); !ok || err != nil {
		t.Fatalf("good frame: %v", err)
	}
	if _, ok, err := ack.ParseLine([]byte(handFrame("HA2", "07", "OK", ""))); !ok || !errors.Is(err, ack.ErrWrongDialect) {
		t.Errorf("intact HA2 frame: err=%v, want a dialect mismatch", err)
	}
	// Frames of another shape cannot be checked: damage that names the dialect it suspects.
	for line, want := range map[string]string{"!HA2|hello|v2\n": "HA2", "noise!HA10|x\n": "HA10", "!HA129|0A|OK|QUJD|12345678|9\n": "HA129"} {
		_, ok, err := ack.ParseLine([]byte(line))
		var fe *ack.FrameError
		if !ok || !errors.As(err, &fe) || fe.Dialect != want || errors.Is(err, ack.ErrWrongDialect) {
			t.Errorf("%q: err=%v, want damage suspecting %s", line, err, want)
		}
	}
	_, _, err := ack.ParseLine([]byte(handFrame("HA2", "07", "OK", "")))
	if want := "module speaks HA2; hilbench speaks HA1"; err == nil || err.Error() != want {
		t.Errorf("dialect error %q, want %q", err, want)
	}
	if _, ok, err := ack.ParseLine([]byte("I (100) wifi: connected, HA! 1\r\n")); ok || err != nil {
		t.Errorf("log line: ok=%v err=%v", ok, err)
	}
}

func TestTextAndChunkPayloads(t *testing.T) {
	txt, err := ack.ParseText(ack.EncodeText("dsn", "G0X", "msg", "a=b c", "max_chunk", "512"))
	if err != nil || txt["dsn"] != "G0X" || txt["msg"] != "a=b c" || txt["max_chunk"] != "512" {
		t.Fatalf("text %v err %v", txt, err)
	}
	if txt, err := ack.ParseText([]byte("state=keyed")); err != nil || txt["state"] != "keyed" {
		t.Errorf("no final LF: %v %v", txt, err)
	}
	for _, bad := range []string{"State=x\n", "novalue\n", "=x\n", "a-b=1\n"} {
		if _, err := ack.ParseText([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	off, data, err := ack.DecodeChunk(ack.EncodeChunk(0x01020304, []byte("xy")))
	if err != nil || off != 0x01020304 || string(data) != "xy" {
		t.Errorf("chunk %x %q %v", off, data, err)
	}
	if p := ack.EncodeChunk(256, nil); !bytes.Equal(p, []byte{0, 0, 1, 0}) {
		t.Errorf("offset 256 encodes as % x", p)
	}
	if _, _, err := ack.DecodeChunk([]byte{1, 2, 3}); err == nil {
		t.Error("3-byte chunk decoded")
	}
}

package ack_test

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"hilbench/targets/ack"
)

// FuzzParseLine: a line the driver accepts as an HA1 frame is exactly the frame Encode writes
// for what it parsed (from its last "!HA" to the line end), and parsing that again gives it back.
func FuzzParseLine(f *testing.F) {
	for _, fr := range []ack.Frame{
		{Seq: 0x00, Verb: "HELLO"},
		{Seq: 0x01, Verb: "INFO"},
		{Seq: 0x2A, Verb: "OK", Payload: ack.EncodeText("state", "blank", "dsn", "G0A1000000000001")},
		{Seq: 0xFF, Verb: "DATA", Payload: ack.EncodeChunk(512, bytes.Repeat([]byte{0xA5}, 64))},
		{Seq: 0x10, Verb: "FACTORY_RESET"},
		{Seq: 0x07, Verb: "ERR", Payload: ack.EncodeText("code", "busy", "msg", "a=b")},
	} {
		line, err := fr.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(line)
		f.Add(append([]byte("boot: log line "), bytes.Replace(line, []byte("\n"), []byte("\r\n"), 1)...))
	}
	f.Add([]byte("!HA2|00|HELLO||0BADF00D\n"))
	f.Add([]byte("!HA1|00|HELLO|AA==|zzzzzzzz"))
	f.Add([]byte("!HA1|0|||"))
	f.Add([]byte("plain log line\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		fr, ok, err := ack.ParseLine(line)
		frameStart := bytes.LastIndex(line, []byte("!HA"))
		if ok != (frameStart >= 0) {
			t.Fatalf("ParseLine(%q): ok %v, but \"!HA\" at %d", line, ok, frameStart)
		}
		if !ok || err != nil {
			if !ok && err != nil {
				t.Fatalf("ParseLine(%q): not a frame, yet error %v", line, err)
			}
			return
		}
		enc, err := fr.Encode()
		if err != nil {
			t.Fatalf("ParseLine(%q) = %v, which does not encode: %v", line, fr, err)
		}
		want := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))[frameStart:]
		if !bytes.Equal(bytes.TrimSuffix(enc, []byte("\n")), want) {
			t.Fatalf("ParseLine(%q) = %v, which encodes as %q", line, fr, enc)
		}
		again, ok, err := ack.ParseLine(enc)
		if !ok || err != nil || again.Seq != fr.Seq || again.Verb != fr.Verb || !bytes.Equal(again.Payload, fr.Payload) {
			t.Fatalf("re-parsing %q: %v %v %v, want %v", enc, again, ok, err, fr)
		}
	})
}

var textKeyRE = regexp.MustCompile(`^[a-z0-9_]+$`)

// FuzzParseText: every key parsed is [a-z0-9_]+ and no value holds a line end; writing the pairs
// back with EncodeText and parsing again gives the same pairs.
func FuzzParseText(f *testing.F) {
	f.Add(ack.EncodeText("state", "provisioned", "dsn", "G0A1000000000001"))
	f.Add(ack.EncodeText("code", "busy", "msg", "try again = later"))
	f.Add([]byte("k=v"))
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte("Bad=1\n"))
	f.Add([]byte("a=1\n\nb=2\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		text, err := ack.ParseText(p)
		if err != nil {
			return
		}
		var pairs []string
		for _, k := range slices.Sorted(maps.Keys(text)) {
			if !textKeyRE.MatchString(k) || strings.ContainsAny(text[k], "\n") {
				t.Fatalf("ParseText(%q): pair %q=%q", p, k, text[k])
			}
			pairs = append(pairs, k, text[k])
		}
		again, err := ack.ParseText(ack.EncodeText(pairs...))
		if err != nil || !maps.Equal(again, text) {
			t.Fatalf("ParseText(%q) = %v; written back and parsed: %v, %v", p, text, again, err)
		}
	})
}

// FuzzDecodeChunk: a binary payload decodes only when it holds its 4-byte offset, and EncodeChunk
// of what it decoded gives the payload back.
func FuzzDecodeChunk(f *testing.F) {
	f.Add(ack.EncodeChunk(0, []byte("firmware")))
	f.Add(ack.EncodeChunk(0xFFFFFFFF, nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		off, data, err := ack.DecodeChunk(p)
		if (err == nil) != (len(p) >= 4) {
			t.Fatalf("DecodeChunk(%x): %v", p, err)
		}
		if err == nil && !bytes.Equal(ack.EncodeChunk(off, data), p) {
			t.Fatalf("DecodeChunk(%x) = %d, %x, which encodes differently", p, off, data)
		}
	})
}

// FuzzReadProduct: any product configuration reads without a panic, and the name and module it
// yields are trimmed single-line values free of comments.
func FuzzReadProduct(f *testing.F) {
	f.Add([]byte("[product]\nname = Smart Plug\nmodule = WRL-ACK-1\n"))
	f.Add([]byte("# vendor file\n[ other ]\nname = no\n[product]\nname=Plug # comment\n"))
	f.Add([]byte("[product\nname = x\n"))
	f.Add([]byte("[product]\njunk line\n"))
	f.Add([]byte("[product]\nname = " + strings.Repeat("x", 70000) + "\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256<<10 {
			t.Skip()
		}
		path := filepath.Join(dir, "product.conf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := ack.ReadProduct(path)
		if err != nil {
			return
		}
		for _, v := range []string{p.Name, p.Module} {
			if v != strings.TrimSpace(v) || strings.ContainsAny(v, "#\n") {
				t.Fatalf("ReadProduct(%q) = %+v: value %q", data, p, v)
			}
		}
	})
}

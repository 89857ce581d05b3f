package console

import (
	"bytes"
	"strconv"
	"testing"
)

// FuzzClean: cleaned console output holds no escape, CR or other control byte but LF and TAB;
// cleaning it again changes nothing; and the cleaner gives the same text however the bytes are
// split between reads.
func FuzzClean(f *testing.F) {
	for _, s := range []string{
		"~ # \x1b[6n", "line one\r\nline two\r\r\n", "wrapped echo\r\r\ncontinues",
		"\x1b]0;title\x07prompt$ ", "\x1b]2;t\x1b\\x", "\x1b(Bplain\x1b7\x1b8", "cr only\rnext",
		"nul\x00bel\x07bs\x08del\x7ftab\t.", "\x1b[" + string(bytes.Repeat([]byte{'1'}, 40)) + "m",
		"\x1b\x1b[1mbold", "utf-8 \xc3\xa9 \xff", "",
	} {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		var c cleaner
		out := c.feed(nil, in)
		for _, b := range out {
			if b == 0x1b || b == '\r' || (b < 0x20 && b != '\n' && b != '\t') || b == 0x7f {
				t.Fatalf("clean(%q) = %q holds byte %#x", in, out, b)
			}
		}
		if again := clean(string(out)); again != string(out) {
			t.Fatalf("clean is not idempotent: %q -> %q -> %q", in, out, again)
		}
		k := int(split) % (len(in) + 1)
		var c2 cleaner
		parts := c2.feed(c2.feed(nil, in[:k]), in[k:])
		if !bytes.Equal(parts, out) {
			t.Fatalf("clean(%q) = %q whole, %q split at %d", in, out, parts, k)
		}
	})
}

// FuzzShellMarkers: findEnd finds the first well-formed end marker ("@@E<seq>:" 1 to 3 digits
// "@@") and nothing else, and the framing Shell expects from the device gives back the command's
// output and status whatever the output holds, as long as it does not forge our end marker.
func FuzzShellMarkers(f *testing.F) {
	f.Add([]byte("hello\n"), uint64(1), uint8(0))
	f.Add([]byte("@@E1:@@ @@E1:1234@@ @@E1:x@@"), uint64(1), uint8(2))
	f.Add([]byte("@@B7@@\nnested\n@@E8:0@@\n"), uint64(7), uint8(127))
	f.Add([]byte(""), uint64(18446744073709551615), uint8(255))
	f.Fuzz(func(t *testing.T, out []byte, seq uint64, status uint8) {
		endMark := []byte("@@E" + strconv.FormatUint(seq, 10) + ":")
		beginMark := []byte("@@B" + strconv.FormatUint(seq, 10) + "@@\n")

		// findEnd on the raw bytes: what it reports is a well-formed marker, and the first.
		if i, st, after := findEnd(out, endMark); i >= 0 {
			digits := out[i+len(endMark) : after-2]
			n, err := strconv.Atoi(string(digits))
			if !bytes.HasPrefix(out[i:], endMark) || len(digits) < 1 || len(digits) > 3 || err != nil || n != st ||
				!bytes.Equal(out[after-2:after], []byte("@@")) {
				t.Fatalf("findEnd(%q) = %d, %d, %d: not a marker", out, i, st, after)
			}
			if j, _, _ := findEnd(out[:i+len(endMark)-1], endMark); j >= 0 {
				t.Fatalf("findEnd(%q) = %d, but a marker ends before it at %d", out, i, j)
			}
		}

		// The device's answer as Shell frames it: begin marker, output, end marker, prompt.
		if bytes.Contains(out, endMark) {
			return // output printing our own end marker is indistinguishable from it
		}
		var p []byte
		p = append(p, "echo ...\n"...)
		p = append(p, beginMark...)
		p = append(p, out...)
		p = append(p, "@@E"+strconv.FormatUint(seq, 10)+":"+strconv.Itoa(int(status))+"@@\n~ # "...)
		ei, st, after := findEnd(p, endMark)
		if ei < 0 || st != int(status) || string(p[after:]) != "\n~ # " {
			t.Fatalf("framed output %q: findEnd = %d, %d, %d", p, ei, st, after)
		}
		bi := bytes.LastIndex(p[:ei], beginMark)
		if bi < 0 {
			t.Fatalf("framed output %q: no begin marker", p)
		}
		got := p[bi+len(beginMark) : ei]
		if !bytes.Contains(out, beginMark) && !bytes.Equal(got, out) {
			t.Fatalf("framed output %q: Shell would read %q, want %q", p, got, out)
		}
	})
}

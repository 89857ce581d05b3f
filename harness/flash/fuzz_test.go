package flash

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeIHex is an Intel HEX writer for the fuzz targets: data at base in records of recLen bytes,
// an 04 record at every 64 KiB window, an optional 05 entry point, the EOF record.
func writeIHex(base uint32, data []byte, recLen int, entry uint32, hasEntry bool) []byte {
	var b strings.Builder
	rec := func(typ byte, off uint16, payload []byte) {
		r := append([]byte{byte(len(payload)), byte(off >> 8), byte(off), typ}, payload...)
		var sum byte
		for _, c := range r {
			sum += c
		}
		fmt.Fprintf(&b, ":%X%02X\r\n", r, -sum)
	}
	upper, window := uint32(0), false
	for i := 0; i < len(data); {
		addr := base + uint32(i)
		if !window || addr>>16 != upper {
			upper, window = addr>>16, true
			rec(ihexLinear, 0, []byte{byte(upper >> 8), byte(upper)})
		}
		n := min(recLen, len(data)-i, 0x10000-int(addr&0xFFFF))
		rec(ihexData, uint16(addr), data[i:i+n])
		i += n
	}
	if hasEntry {
		rec(ihexStartLin, 0, binary.BigEndian.AppendUint32(nil, entry))
	}
	rec(ihexEOF, 0, nil)
	return []byte(b.String())
}

// FuzzParseIHex: an image parseIHex accepts, written out again, parses to the same bytes, base
// and entry point; and any bytes written as Intel HEX at any base parse back unchanged.
func FuzzParseIHex(f *testing.F) {
	f.Add(writeIHex(0x08000000, []byte("firmware image"), 16, 0x08000101, true), uint32(0))
	f.Add(writeIHex(0x0800FFF0, bytes.Repeat([]byte{0xAB}, 40), 32, 0, false), uint32(0xFFF0))
	f.Add([]byte(":10010000214601360121470136007EFE09D2190140\n:100110002146017E17C20001FF5F16002148011928\n:00000001FF\n"), uint32(1))
	f.Add([]byte(":020000021000EC\n:0400000300003800C1\n:02FFFE00AABB98\n:00000001FF\n"), uint32(0xFFFFFFF0))
	f.Add([]byte(":020000040800F2\n:00000001FF\n:00000001FF\n"), uint32(7))
	f.Add([]byte(":0200000400FFFB\n:020000040000FA\n:0100000000FF\n:00000001FF\n"), uint32(0))
	f.Fuzz(func(t *testing.T, raw []byte, base uint32) {
		if len(raw) > 64<<10 {
			t.Skip()
		}
		img, err := parseIHex(raw)
		if err == nil {
			again, err := parseIHex(writeIHex(img.base, img.data, 32, img.entry, img.hasEntry))
			if err != nil || again.base != img.base || !bytes.Equal(again.data, img.data) ||
				again.hasEntry != img.hasEntry || again.entry != img.entry {
				t.Fatalf("parseIHex(%q): base %#x, %d bytes; written again and parsed: %v", raw, img.base, len(img.data), err)
			}
		}
		if len(raw) == 0 || uint64(base)+uint64(len(raw)) > 1<<32 {
			return
		}
		img, err = parseIHex(writeIHex(base, raw, 1+int(base%255), base, base%2 == 0))
		if err != nil || img.base != base || !bytes.Equal(img.data, raw) {
			t.Fatalf("%d bytes written at %#x: parsed back %v", len(raw), base, err)
		}
	})
}

// FuzzParseDFU: parseDFU reads back what AppendDFUSuffix writes; a file it accepts with a plain
// 16-byte DFU 1.0 suffix is exactly its data with AppendDFUSuffix's suffix; the data it returns
// is the file's beginning.
func FuzzParseDFU(f *testing.F) {
	f.Add(AppendDFUSuffix([]byte("image"), 0x1209, 0x0001, 0x0100))
	f.Add(AppendDFUSuffix([]byte("DfuSe\x01rest"), 0x0483, 0xDF11, 0x2200))
	f.Add([]byte("short"))
	f.Add([]byte("0123456789abUFD\x10\x00\x00\x00\x00"))
	f.Add(append(bytes.Repeat([]byte{0}, 20), 0, 0, 0, 0, 0, 0, 0, 0, 'U', 'F', 'D', 0xFF, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, raw []byte) {
		data, s, err := parseDFU(raw)
		if err == nil {
			if !bytes.HasPrefix(raw, data) || len(raw)-len(data) != int(s.Length) {
				t.Fatalf("parseDFU(%x): data of %d bytes, suffix length %d", raw, len(data), s.Length)
			}
			if s.Length == dfuSuffixLen && s.BCDDFU == 0x0100 &&
				!bytes.Equal(AppendDFUSuffix(data, s.IDVendor, s.IDProduct, s.BCDDevice), raw) {
				t.Fatalf("parseDFU(%x) = %+v, which AppendDFUSuffix writes differently", raw, s)
			}
		}
		out := AppendDFUSuffix(raw, 0x1209, 0xBEEF, 0x0042)
		data, s, err = parseDFU(out)
		if err != nil || !bytes.Equal(data, raw) || s.IDVendor != 0x1209 || s.IDProduct != 0xBEEF || s.BCDDevice != 0x0042 {
			t.Fatalf("AppendDFUSuffix(%x) parsed back: %x %+v %v", raw, data, s, err)
		}
	})
}

// answeringLine is a YMODEM receiver played from a script: the first answer goes out at once,
// each write by the sender is answered with the next one; once the script is spent the line
// closes. An empty answer is silence (the sender's timeout).
type answeringLine struct {
	mu      sync.Mutex
	answers [][]byte
	in      chan []byte
	closed  bool
	writes  [][]byte
}

func (l *answeringLine) next() {
	if len(l.answers) == 0 {
		if !l.closed {
			l.closed = true
			close(l.in)
		}
		return
	}
	a := l.answers[0]
	l.answers = l.answers[1:]
	if len(a) > 0 {
		l.in <- a
	}
}

func (l *answeringLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, append([]byte(nil), p...))
	l.next()
	return len(p), nil
}

// FuzzYModemAnswers: whatever the receiver answers, the sender returns promptly, writes only
// well-formed blocks (CRC-16, numbers and complements), EOTs and its abort sequence, never
// counts more bytes than the file, and when it reports success the data blocks it had
// acknowledged, taken in order without repeats, are the file.
func FuzzYModemAnswers(f *testing.F) {
	ok := "C\n\x06C\n\x06\n\x06\n\x15\n\x06C\n\x06"
	f.Add([]byte(ok), uint16(1500))
	f.Add([]byte(ok), uint16(0))
	f.Add([]byte("C\n\x15\n\x15\n\x06C\n\x06\n\n\x06\n\x15\n\x06C\n\x06"), uint16(100))
	f.Add([]byte("C\n\x18\x18"), uint16(10))
	f.Add([]byte("xyzC\n\x06garbage\n\x18x\x06C\n"), uint16(2048))
	f.Add([]byte("\x15\x15\x15"), uint16(1))
	f.Fuzz(func(t *testing.T, script []byte, size uint16) {
		if len(script) > 4<<10 {
			t.Skip()
		}
		data := make([]byte, int(size)%5000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		l := &answeringLine{answers: bytes.Split(script, []byte("\n")), in: make(chan []byte, len(script)+2)}
		l.mu.Lock()
		l.next()
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		st, err := SendYModemChan(ctx, l, l.in, "fw.bin", data, YModemOptions{
			BlockTimeout: time.Millisecond, StartTimeout: time.Millisecond, MaxRetries: 3})
		if d := time.Since(start); d > 5*time.Second || ctx.Err() != nil {
			t.Fatalf("SendYModem took %v (%v)", d, err)
		}
		if st.Bytes > int64(len(data)) || st.Bytes < 0 {
			t.Fatalf("SendYModem counted %d bytes of %d", st.Bytes, len(data))
		}
		var got []byte
		next := byte(1)
		eots := 0
		for _, w := range l.writes {
			switch {
			case len(w) == 1 && w[0] == eot:
				eots++
			case len(w) == 16 && bytes.Equal(w, []byte{can, can, can, can, can, can, can, can, 8, 8, 8, 8, 8, 8, 8, 8}):
			case len(w) == 133 && w[0] == soh, len(w) == 1029 && w[0] == stx:
				n := len(w) - 5
				if w[1] != ^w[2] || crc16(w[3:3+n]) != uint16(w[3+n])<<8|uint16(w[4+n]) {
					t.Fatalf("block %x: bad number complement or CRC", w[:3])
				}
				if w[1] == next && eots == 0 && w[1] != 0 {
					got = append(got, w[3:3+n]...)
					next++
				}
			default:
				t.Fatalf("SendYModem wrote %d bytes %x", len(w), w[:min(len(w), 8)])
			}
		}
		if err != nil {
			return
		}
		if st.Bytes != int64(len(data)) || len(got) < len(data) || !bytes.Equal(got[:len(data)], data) {
			t.Fatalf("SendYModem succeeded: %d bytes counted, blocks carry %d bytes", st.Bytes, len(got))
		}
		for _, c := range got[len(data):] {
			if c != cpmEOF {
				t.Fatalf("the last block is padded with %#x", c)
			}
		}
	})
}

// TestYModemScriptedReceiver: the fuzz target's scripted receiver takes a whole file.
func TestYModemScriptedReceiver(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 150)
	l := &answeringLine{answers: bytes.Split([]byte("C\n\x06C\n\x06\n\x06\n\x15\n\x06C\n\x06"), []byte("\n")), in: make(chan []byte, 16)}
	l.next()
	st, err := SendYModemChan(context.Background(), l, l.in, "fw.bin", data, YModemOptions{
		BlockTimeout: time.Millisecond, StartTimeout: time.Millisecond, MaxRetries: 3})
	if err != nil || st.Bytes != int64(len(data)) || st.Blocks != 2 {
		t.Fatalf("SendYModem = %+v, %v", st, err)
	}
}

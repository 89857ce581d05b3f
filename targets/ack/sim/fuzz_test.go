package sim

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"testing"
	"time"

	"hilbench/targets/ack"
)

// fuzzModule is a module without a pty or boot timer: the firmware's answers go into a pipe that
// the fuzz target reads back, and each line is handled on the calling goroutine.
type fuzzModule struct {
	m    *Module
	rd   *bufio.Reader
	pipe *os.File // the write end, also the module's line (am)
}

func newFuzzModule(tb testing.TB) *fuzzModule {
	pr, pw, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pr.Close(); pw.Close() })
	m := &Module{cfg: Config{Name: "fuzz", Dir: tb.TempDir(), DSN: "G0A1000000000F22", Module: DefaultModule,
		Firmware: DefaultFirmware, Dialect: DefaultDialect, BootDelay: time.Hour, FlashWriteRate: 1 << 30},
		am: pw, powered: true, fault: map[string]bool{}, busy: map[string]int{}}
	if err := os.MkdirAll(m.UserDataDir(), 0o755); err != nil {
		tb.Fatal(err)
	}
	return &fuzzModule{m: m, rd: bufio.NewReader(pr), pipe: pw}
}

// handle gives the firmware (fresh RAM when the last line rebooted it) one line and returns the
// lines it sent in answer.
func (fm *fuzzModule) handle(r *runState, line string) (*runState, []string) {
	m := fm.m
	m.mu.Lock()
	if m.timer != nil { // a REBOOT or FACTORY_RESET: boot at once, without the boot log
		m.timer.Stop()
		m.timer = nil
	}
	if r == nil || r.gen != m.gen {
		r = &runState{m: m, gen: m.gen, quit: make(chan struct{})}
	}
	m.mu.Unlock()
	r.handleLine(line)
	const end = "\x00end of answer\n"
	_ = fm.pipe.SetWriteDeadline(time.Time{}) // sendRaw leaves a deadline of its own
	if _, err := fm.pipe.WriteString(end); err != nil {
		panic(err)
	}
	var out []string
	for {
		l, err := fm.rd.ReadString('\n')
		if err != nil {
			panic(err)
		}
		if l == end {
			return r, out
		}
		out = append(out, l)
	}
}

// withCRC replaces the last field of the line's frame by the CRC-32 of the bytes before it.
func withCRC(line string) string {
	i := strings.LastIndex(line, "!HA")
	j := strings.LastIndex(line, "|")
	if i < 0 || j < i {
		return line
	}
	return line[:j+1] + fmt.Sprintf("%08X", crc32.ChecksumIEEE([]byte(line[i+1:j+1])))
}

// FuzzFirmwareLine: the simulated firmware answers every line holding "!HA" with exactly one
// well-formed HA1 frame (OK, ERR or NAK, with the sequence number it was sent when that is two
// uppercase hex digits), and any other line with nothing. fixCRC makes the frame's CRC right,
// so that the fuzzer reaches the verbs behind the CRC check.
func FuzzFirmwareLine(f *testing.F) {
	frame := func(seq byte, verb string, payload []byte) string {
		l, err := ack.Frame{Seq: seq, Verb: verb, Payload: payload}.Encode()
		if err != nil {
			f.Fatal(err)
		}
		return strings.TrimSuffix(string(l), "\n")
	}
	for _, s := range []string{
		frame(1, "HELLO", nil),
		frame(2, "KEYGEN", nil) + "\n" + frame(3, "CSR", []byte{0x30, 0x00}) + "\n" + frame(4, "READ", ack.EncodeText("area", "csr", "off", "0", "len", "64")),
		frame(5, "BEGIN", ack.EncodeText("len", "4", "sha256", strings.Repeat("0", 64))) + "\n" + frame(6, "DATA", ack.EncodeChunk(0, []byte("abcd"))) + "\n" + frame(7, "COMMIT", nil),
		frame(8, "REBOOT", nil) + "\n" + frame(9, "HELLO", nil),
		frame(10, "FACTORY_RESET", nil),
		frame(11, "NOSUCH", nil),
		"!HA2|0C|HELLO||00000000",
		"log line",
		"garbage !HA1|zz|HELLO||00000000",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	fm := newFuzzModule(f)
	f.Fuzz(func(t *testing.T, input string, fixCRC bool) {
		if len(input) > 16<<10 {
			t.Skip()
		}
		var r *runState
		for _, line := range strings.Split(input, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if len(line) > 4096 {
				line = line[:4096] // what the firmware's line buffer keeps
			}
			if fixCRC {
				line = withCRC(line)
			}
			var out []string
			r, out = fm.handle(r, line)
			if !strings.Contains(line, "!HA") {
				if len(out) != 0 {
					t.Fatalf("line %q: answered %q", line, out)
				}
				continue
			}
			if len(out) != 1 {
				t.Fatalf("line %q: %d answer lines %q, want 1", line, len(out), out)
			}
			if !strings.HasSuffix(out[0], "\r\n") || strings.Count(out[0], "!HA") != 1 {
				t.Fatalf("line %q: answer %q", line, out[0])
			}
			ans, ok, err := ack.ParseLine([]byte(out[0]))
			if !ok || err != nil {
				t.Fatalf("line %q: answer %q does not parse: %v", line, out[0], err)
			}
			if ans.Verb != "OK" && ans.Verb != "ERR" && ans.Verb != "NAK" {
				t.Fatalf("line %q: answer %v", line, ans)
			}
			parts := strings.Split(line[strings.LastIndex(line, "!HA"):], "|")
			if len(parts) >= 2 && isHex(parts[1], 2) && fmt.Sprintf("%02X", ans.Seq) != parts[1] {
				t.Fatalf("line %q: answer %v has another sequence number", line, ans)
			}
			if ans.Verb == "ERR" {
				if _, err := ack.ParseText(ans.Payload); err != nil && !bytes.HasPrefix(ans.Payload, []byte("code=")) {
					t.Fatalf("line %q: ERR payload %q", line, ans.Payload)
				}
			}
		}
	})
}

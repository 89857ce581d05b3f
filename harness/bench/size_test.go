package bench_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hilbench/harness/bench"
)

// bigBench is a bench file of about size bytes: head, then targets until
// the size is reached, then tail (a mistake, or nothing). It returns the
// text and the line tail starts on.
func bigBench(size int, tail string) ([]byte, int) {
	var b bytes.Buffer
	b.WriteString(head)
	for i := 0; b.Len() < size-len(tail)-200; i++ {
		fmt.Fprintf(&b, "  - name: dut%d\n    family: acs\n    # the adapter on hub port %d\n    console:\n      port: /dev/ttyUSB%d\n\n", i, i, i)
	}
	line := bytes.Count(b.Bytes(), []byte("\n")) + 1
	b.WriteString(tail)
	return b.Bytes(), line
}

// Mistakes near the end of a large file, and the line (relative to where
// the tail starts) each is on.
var bigMistakes = []struct {
	name, tail string
	at         int
	msg        string
}{
	{"outdented key", "  - name: last\n    family: acs\n    console:\n      port: /dev/null\n     baud: 9600\n", 4, "did not find expected key"},
	{"list item in a mapping, comments after", "  - name: last\n    family: acs\n    console:\n      port: /dev/null\n      - 9600\n\n# a comment\n\n      baud: 1\n", 4, "did not find expected key"},
	{"missing colon", "  - name: last\n    family acs\n    console:\n", 1, "could not find expected ':'"},
	{"unclosed quote", "  - name: \"last\n    family: acs\n", 0, "found unexpected end of stream"},
	{"unknown anchor", "  - name: last\n    family: *fam\n", 1, "unknown anchor 'fam' referenced"},
}

// TestLargeFileErrorLocated: a mistake at the end of a 4 MiB bench file is
// reported on its line (how long it takes: BenchmarkLocateError4MiB).
func TestLargeFileErrorLocated(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 4 MiB bench files")
	}
	if raceEnabled {
		// One goroutine parsing: the race detector has nothing to find, and makes the five 4 MiB
		// parses take 25 s of CPU. make test runs this package without -race as well.
		t.Skip("parses 4 MiB bench files in one goroutine; run without -race (make test does)")
	}
	dir := benchDir(t)
	for _, m := range bigMistakes {
		t.Run(m.name, func(t *testing.T) {
			data, start := bigBench(bench.MaxFileSize, m.tail)
			if len(data) > bench.MaxFileSize {
				t.Fatalf("test file is %d bytes", len(data))
			}
			_, err := bench.Parse(filepath.Join(dir, "lab3.yaml"), data)
			want := fmt.Sprintf("lab3.yaml:%d: %s", start+m.at, m.msg)
			if err == nil || !errors.Is(err, bench.ErrSyntax) {
				t.Fatalf("Parse = %v, want a syntax error", err)
			}
			if got := messages(dir, err); len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// TestSyntaxErrorLinesAfterComments: the scanner reads past blank and
// comment lines to the next token; the mistake is still put on its line.
func TestSyntaxErrorLinesAfterComments(t *testing.T) {
	dir := benchDir(t)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"list item, then comments", "a:\n  b: 1\n  - c\n# x\n\n  d: 2\n", "lab3.yaml:3: did not find expected key"},
		{"outdented key after comments", "a:\n  b: 1\n  c: 2\n\n\n# comment\n d: 3\n", "lab3.yaml:7: did not find expected key"},
		{"missing colon, then comments", "a:\n  b: 1\n  c\n\n# x\n\n  d: 2\n", "lab3.yaml:3: could not find expected ':'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, dir, tc.yaml)
			if got := messages(dir, err); len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTooLargeRefused: a file over MaxFileSize is refused, by Load without
// reading it and by Parse, naming the file and its size.
func TestTooLargeRefused(t *testing.T) {
	dir := benchDir(t)
	data, _ := bigBench(5<<20, "")
	path := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bench.Load(path)
	want := fmt.Sprintf("%s: %d bytes; a bench file may hold at most 4194304 (4 MiB)", path, len(data))
	if !errors.Is(err, bench.ErrTooLarge) || err.Error() != want {
		t.Errorf("Load = %v, want %q", err, want)
	}
	_, err = bench.Parse(path, data)
	if !errors.Is(err, bench.ErrTooLarge) || err.Error() != want {
		t.Errorf("Parse = %v, want %q", err, want)
	}
	// The largest file accepted is accepted.
	ok, _ := bigBench(bench.MaxFileSize, "")
	if _, err := bench.Parse(filepath.Join(dir, "lab3.yaml"), ok[:bytes.LastIndex(ok[:bench.MaxFileSize], []byte("\n  - name:"))+1]); err != nil && errors.Is(err, bench.ErrTooLarge) {
		t.Errorf("a file under the limit: %v", err)
	}
}

// BenchmarkLocateError4MiB: Parse of a 4 MiB bench file with a mistake in
// its last lines, located (was quadratic: 1 MB took 87 s).
func BenchmarkLocateError4MiB(b *testing.B) {
	for _, m := range bigMistakes[:2] {
		b.Run(m.name, func(b *testing.B) {
			data, _ := bigBench(bench.MaxFileSize, m.tail)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := bench.Parse("lab3.yaml", data); !errors.Is(err, bench.ErrSyntax) {
					b.Fatal(err)
				}
			}
		})
	}
}

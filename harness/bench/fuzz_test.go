package bench_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hilbench/harness/bench"
)

// FuzzParse: any bench file of up to 64 KiB is accepted or refused with bench.Errors, each
// naming the file and a line inside it; an accepted bench, written out with Marshal, is
// accepted again and writes out the same (Marshal's output is a fixed point).
func FuzzParse(f *testing.F) {
	name, err := filepath.Abs("../../fixtures/benches/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	example, err := os.ReadFile(name)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add(example[:len(example)/2])
	f.Add(bytes.Replace(example, []byte(":"), []byte(""), 3))
	f.Add([]byte("targets:\n  dut1: {family: acs, port: /dev/null}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("targets: [\n"))
	f.Add([]byte("\t- :\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip()
		}
		b, err := parseWithin(t, name, data, 5*time.Second)
		if err != nil {
			var es bench.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse refused with %T: %v", err, err)
			}
			// YAML's line breaks: LF, CR LF, a lone CR, and for yaml.v3 NEL, LS and PS too.
			lines := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) +
				bytes.Count(data, []byte("\u0085")) + bytes.Count(data, []byte("\u2028")) + bytes.Count(data, []byte("\u2029"))
			for _, e := range es {
				if e.File != name || e.Line < 0 || e.Line > lines+1 {
					t.Fatalf("error %q: file %q line %d of %d", e, e.File, e.Line, lines)
				}
			}
			return
		}
		out, err := b.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted bench: %v", err)
		}
		b2, err := parseWithin(t, name, out, 5*time.Second)
		if err != nil {
			t.Fatalf("the accepted bench, written out, is refused: %v\n%s", err, out)
		}
		out2, err := b2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not a fixed point (%v):\n%s\n---\n%s", err, out, out2)
		}
	})
}

// parseWithin is bench.Parse that fails t, naming the input, when it takes longer than d (the
// fuzzer itself has no time limit per input: a hang would only show as executions stopping).
func parseWithin(t *testing.T, name string, data []byte, d time.Duration) (*bench.Bench, error) {
	type result struct {
		b   *bench.Bench
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := bench.Parse(name, data)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(d):
		t.Fatalf("Parse of %d bytes %q did not return within %v", len(data), data, d)
		return nil, nil
	}
}

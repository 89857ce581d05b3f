package plan

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// yamlLines counts lines as YAML does: a lone carriage return, NEL, and the Unicode line and
// paragraph separators each end a line as a newline does, and CR LF ends one.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	n := 1
	for _, r := range s {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

// FuzzParse: any bytes give a plan or errors, never a panic; every error names the file and a
// line within the input; an accepted plan has phases, each of a known type with a positive
// timeout, its retries in range and a unique name.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../fixtures/plans/example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("name: p\nphases:\n  - type: verify\n  - type: shell\n    command: x\n    measurement: {regexp: '(a)', min: 1, max: 2}\n"))
	f.Add([]byte("name: p\nphases: [{type: burn_in}]\n"))
	f.Add([]byte("name: p\nphases:\n  - &a {type: verify}\n  - *a\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", dir, data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %v is no Errors", err)
			}
			lines := yamlLines(data)
			for _, e := range es {
				if e.File != "f.yaml" || e.Line < 0 || e.Line > lines+1 || e.Kind == nil {
					t.Fatalf("error %+v (input of %d lines)", e, lines)
				}
			}
			return
		}
		if len(p.Phases) == 0 {
			t.Fatal("accepted a plan without phases")
		}
		seen := map[string]bool{}
		for _, ph := range p.Phases {
			if !slices.Contains(Types(), ph.Type) || ph.Timeout <= 0 || ph.Retries < 0 || ph.Retries > MaxRetries || seen[ph.Name] {
				t.Fatalf("accepted phase %+v", ph)
			}
			seen[ph.Name] = true
		}
	})
}

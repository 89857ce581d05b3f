package budget

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen: any counter file opens or is refused with a *CorruptError or *DAKMismatchError,
// without a panic; one that opens counts as many signatures as its count lines say, and a
// reservation then counts exactly one more, also for the next process to open it.
func FuzzOpen(f *testing.F) {
	dak := testCert(f, "fuzz DAK")
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed")
	b := mustOpen(f, seed, dak, 0)
	if _, err := b.Reserve(); err != nil {
		f.Fatal(err)
	}
	if _, err := b.Reserve(); err != nil {
		f.Fatal(err)
	}
	b.Close()
	good, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-5])                                         // torn last line
	f.Add(bytes.Replace(good, []byte("\n2 "), []byte("\n3 "), 1))     // a gap in the count
	f.Add(bytes.Replace(good, []byte(`"version"`), []byte(`"x"`), 1)) // unknown field
	f.Add(good[:bytes.IndexByte(good, '\n')+1])
	f.Add([]byte("{}\n"))
	f.Add([]byte(""))
	path := filepath.Join(dir, "budget")
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip()
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := Open(path, dak, 0)
		if err != nil {
			var ce *CorruptError
			var me *DAKMismatchError
			if !errors.As(err, &ce) && !errors.As(err, &me) {
				t.Fatalf("Open refused with %T: %v", err, err)
			}
			return
		}
		used := b.Used()
		if used < 0 || used > int64(bytes.Count(data, []byte("\n"))) {
			b.Close()
			t.Fatalf("Open counted %d signatures in %q", used, data)
		}
		r, err := b.Reserve()
		b.Close()
		if err != nil || r.Used != used+1 {
			t.Fatalf("Reserve after %d: %+v, %v", used, r, err)
		}
		again, err := Open(path, dak, 0)
		if err != nil {
			t.Fatalf("reopening after a reservation: %v", err)
		}
		defer again.Close()
		if got := again.Used(); got != used+1 {
			t.Fatalf("reopened: %d used, want %d", got, used+1)
		}
	})
}

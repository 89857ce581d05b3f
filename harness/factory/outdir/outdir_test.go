package outdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteAll(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out", "labels")
	files := []File{{Name: "a.png", Data: []byte("A")}, {Name: "b.svg", Data: []byte("B")}}
	if err := Write(dir, files); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("dir holds %d entries, want 2 (no temporaries): %v", len(ents), ents)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil || string(got) != string(f.Data) {
			t.Errorf("%s = %q, %v", f.Name, got, err)
		}
	}
}

// TestUnwritableDirWritesNothing: a read-only directory fails the batch, naming the file, and
// leaves it as it was.
func TestUnwritableDirWritesNothing(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		// root writes into read-only directories; a file in the way of the directory fails for root too.
		parent := t.TempDir()
		blocker := filepath.Join(parent, "out")
		if err := os.WriteFile(blocker, []byte("not a dir"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := Write(blocker, []File{{Name: "a.png", Data: []byte("A")}})
		if err == nil || !strings.Contains(err.Error(), "output directory") {
			t.Fatalf("Write into a file = %v, want an output directory error", err)
		}
		got, _ := os.ReadFile(blocker)
		if string(got) != "not a dir" {
			t.Errorf("the file in the way changed: %q", got)
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	err := Write(dir, []File{{Name: "a.png", Data: []byte("A")}})
	if err == nil || !strings.Contains(err.Error(), "a.png") {
		t.Fatalf("Write into a read-only dir = %v, want an error naming a.png", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("read-only dir holds %v", ents)
	}
}

// TestFailureMidBatchLeavesNothing: when a later file of the batch cannot be written, the files
// before it are not left behind either (whole or half).
func TestFailureMidBatchLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A directory named like the temporary of the second file's target cannot be replaced by a
	// file: the rename fails. Make the second write itself fail instead: a name too long.
	long := strings.Repeat("x", 300) + ".png"
	err := Write(dir, []File{{Name: "a.png", Data: []byte("A")}, {Name: long, Data: []byte("B")}})
	if err == nil {
		t.Fatal("Write with an impossible name succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed batch left %d entries behind", len(ents))
	}
}

func TestBadNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, files := range [][]File{
		{{Name: "../x"}}, {{Name: ""}}, {{Name: ".hidden"}}, {{Name: "a"}, {Name: "a"}},
	} {
		if err := Write(dir, files); err == nil {
			t.Errorf("Write(%v) succeeded", files)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused batches left %v", ents)
	}
}

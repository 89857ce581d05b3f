package yubikey

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// touch moves the file's modification time on by a second: the content is unchanged, the
// file's identity is not.
func touch(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mt := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// White space around the PIN is refused with a message that says so, never with the PIN.
func TestPINFileWhiteSpaceSaysWhy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" 123456\n", "leading space"},
		{"\t123456", "leading space"},
		{"123456 \n", "trailing space"},
		{"123456 ", "trailing space"},
		{"123456\t\r\n", "trailing space"},
		{"123456\n ", "trailing space"},
	} {
		p := writePINFile(t, tc.in, 0o600)
		_, err := readPINFile(p)
		if !errors.Is(err, ErrPINFile) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("PIN file %q: %v; want ErrPINFile naming the file and saying %q", tc.in, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "123456") {
			t.Errorf("PIN file %q: the error shows the PIN: %v", tc.in, err)
		}
	}
	// Through Open too, before any card is touched.
	_, err := Open(context.Background(), Config{Serial: 1, PINFile: writePINFile(t, " 1234567\n", 0o600), StateDir: t.TempDir()})
	if !errors.Is(err, ErrPINFile) || !strings.Contains(err.Error(), "starts with white space") {
		t.Errorf("Open with a leading space: %v", err)
	}
}

// The memo itself, without a card: an unchanged file is refused, any change (mtime, size,
// inode) lets it through; nothing of the PIN is written.
func TestPINMemoByFileIdentity(t *testing.T) {
	memo, err := memoFor(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := writePINFile(t, "7315946\n", 0o600)
	id, err := statPINFile(p)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 12, 6, 5, 4, 3, 0, time.UTC)
	if err := memo.record(id, 7, 2, when); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(memo.path)
	if strings.Contains(string(data), "7315946") {
		t.Fatalf("the memo holds the PIN: %s", data)
	}
	if fi, _ := os.Stat(memo.path); fi.Mode().Perm() != 0o600 {
		t.Errorf("memo mode %v", fi.Mode().Perm())
	}
	err = memo.check(id)
	var ke *KnownWrongPINError
	if !errors.As(err, &ke) || !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("check of the unchanged file = %v", err)
	}
	want := "the PIN in " + p + " was wrong on 2026-12-06 05:04:03 UTC (2 retries left then); fix the file first"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}

	touch(t, p)
	if id2, _ := statPINFile(p); memo.check(id2) != nil {
		t.Errorf("a touched file is refused: %v", memo.check(id2))
	}
	// Same mtime, other size.
	fi, _ := os.Stat(p)
	os.WriteFile(p, []byte("7315947"), 0o600)
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	if id3, _ := statPINFile(p); memo.check(id3) != nil {
		t.Errorf("a file of another size is refused: %v", memo.check(id3))
	}
	// Same size and mtime, another inode (replaced by rename).
	if err := memo.record(id, 7, 2, when); err != nil {
		t.Fatal(err)
	}
	tmp := p + ".new"
	os.WriteFile(tmp, []byte("7315946\n"), 0o600)
	os.Chtimes(tmp, id.ModTime, id.ModTime)
	os.Rename(tmp, p)
	if id4, _ := statPINFile(p); id4.Inode == id.Inode || memo.check(id4) != nil {
		t.Errorf("a replaced file (inode %d, was %d): %v", id4.Inode, id.Inode, memo.check(id4))
	}
	if err := memo.forget(id.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(memo.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("memo after the last record was forgotten: %v", err)
	}
}

// After a wrong-PIN stop the next Open refuses the unchanged PIN file without sending anything
// to the card; a changed file is tried, and a right PIN clears the record.
func TestWrongPINRememberedByFileIdentity(t *testing.T) {
	s := getStation(t)
	t.Cleanup(func() { restorePIN(t, s) })
	cfg := s.config(piv.SlotSignature)
	cfg.StateDir = t.TempDir()
	cfg.PINFile = writePINFile(t, "1111111\n", 0o600)

	_, err := Open(context.Background(), cfg)
	var we *WrongPINError
	if !errors.As(err, &we) || we.Retries != 2 {
		t.Fatalf("Open with a wrong PIN = %v; want 2 retries left", err)
	}
	s.wantRetries(t, 2, 3)
	memo := filepath.Join(cfg.StateDir, WrongPINMemoFile)
	if data, err := os.ReadFile(memo); err != nil || strings.Contains(string(data), "1111111") {
		t.Fatalf("memo %s: %v\n%s", memo, err, data)
	}

	// Run 2 with the same file: refused, the counter untouched.
	for range 2 {
		_, err = Open(context.Background(), cfg)
		mustIs(t, err, ErrKnownWrongPIN)
		if !strings.Contains(err.Error(), "the PIN in "+cfg.PINFile+" was wrong on ") ||
			!strings.Contains(err.Error(), "(2 retries left then); fix the file first") || strings.Contains(err.Error(), "1111111") {
			t.Errorf("message %q", err)
		}
		s.wantRetries(t, 2, 3)
	}

	// The operator fixes the file (in place: same inode, new size and time): tried, and right.
	if err := os.WriteFile(cfg.PINFile, []byte(stationPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := open(t, cfg)
	sign(t, k, "after the PIN file was fixed")
	s.wantRetries(t, 3, 3)
	if _, err := os.Stat(memo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the wrong-PIN record outlived a right PIN: %v", err)
	}
}

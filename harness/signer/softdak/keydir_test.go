//go:build unix

package softdak_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hilbench/harness/signer/softdak"
)

func wantDirRefused(t *testing.T, key, cert, dir string, mode fs.FileMode) {
	t.Helper()
	_, err := softdak.Open(key, cert)
	var de *softdak.DirectoryError
	if !errors.Is(err, softdak.ErrInsecureKeyDir) || !errors.As(err, &de) {
		t.Fatalf("Open with %s at %04o = %v, want ErrInsecureKeyDir", dir, mode, err)
	}
	for _, s := range []string{dir, fmt.Sprintf("%04o", mode), "chmod go-w " + dir} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
}

// As ssh refuses authorized_keys in a directory others can write to: they could swap the key.
func TestOpenRefusesKeyInWritableDirectory(t *testing.T) {
	r := initDev(t, softdak.InitOptions{})
	t.Cleanup(func() { os.Chmod(r.Dir, 0o700) })
	for _, mode := range []fs.FileMode{0o777, 0o770, 0o730, 0o703, 0o720} {
		if err := os.Chmod(r.Dir, mode); err != nil {
			t.Fatal(err)
		}
		wantDirRefused(t, r.Key, r.Certificate, r.Dir, mode)
	}
	for _, mode := range []fs.FileMode{0o755, 0o750, 0o700} {
		if err := os.Chmod(r.Dir, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := softdak.Open(r.Key, r.Certificate); err != nil {
			t.Errorf("directory mode %04o: %v", mode, err)
		}
	}
}

func TestOpenRefusesKeyUnderWritableParent(t *testing.T) {
	parent := t.TempDir()
	r, err := softdak.InitDevelopment(filepath.Join(parent, "dak"), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	wantDirRefused(t, r.Key, r.Certificate, parent, 0o777)

	// A key reached through a symlink in a writable directory: the link can be swapped too.
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(open, "key.pem")
	if err := os.Symlink(r.Key, link); err != nil {
		t.Fatal(err)
	}
	wantDirRefused(t, link, r.Certificate, open, 0o777)
}

// /tmp-like directories (sticky, owned by root) are fine; a sticky one owned by someone else is
// not (its owner can replace anything in it).
func TestOpenStickyDirectories(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the directory")
	}
	r := initDev(t, softdak.InitOptions{})
	t.Cleanup(func() { os.Chmod(r.Dir, 0o700); os.Chown(r.Dir, 0, 0) })
	if err := os.Chmod(r.Dir, fs.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := softdak.Open(r.Key, r.Certificate); err != nil {
		t.Errorf("sticky root-owned directory: %v", err)
	}
	if err := os.Chown(r.Dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantDirRefused(t, r.Key, r.Certificate, r.Dir, 0o777)
}

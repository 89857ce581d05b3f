//go:build unix

package softdak

import (
	"os"
	"path/filepath"
	"syscall"
)

// checkKeyDirs refuses a key file under a directory group or others may write to: every
// directory from the key file's own up to /, both as the path is written and as its symlinks
// resolve, as ssh's StrictModes does for authorized_keys. A sticky directory owned by root
// (/tmp) passes: others can neither remove nor rename what they do not own there.
func checkKeyDirs(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil // the read that follows reports a path that cannot be used
	}
	dirs := []string{filepath.Dir(abs)}
	if real, err := filepath.EvalSymlinks(abs); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		for {
			if !seen[d] {
				seen[d] = true
				fi, err := os.Stat(d)
				if err == nil && fi.Mode().Perm()&0o022 != 0 && !stickyRoot(fi) {
					return &DirectoryError{Path: path, Dir: d, Mode: fi.Mode()}
				}
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return nil
}

func stickyRoot(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeSticky != 0 && st.Uid == 0
}

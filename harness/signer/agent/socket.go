package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is sun_path (108 bytes) less its NUL.
const maxSocketPath = 107

// geteuid is a seam for tests of the ownership checks.
var geteuid = os.Geteuid

// listening is a socket the agent owns, with what it must undo.
type listening struct {
	ln   *net.UnixListener
	path string
	lock *os.File // "<path>.lock", flocked while the agent runs
	ino  uint64   // the socket file's inode, so close removes only ours
}

// listen creates the agent's socket at path, mode 0600, in a directory
// private to this user, after making sure no other agent serves it. The
// socket is bound in a fresh 0700 directory, chmod'ed, then renamed into
// place, so nobody can connect before the mode is 0600.
func listen(path string, logf func(string, ...any)) (*listening, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	path = abs
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("agent socket path %s is %d bytes, longer than a Unix socket allows (%d)", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}

	lock, err := lockPath(path)
	if err != nil {
		return nil, err
	}
	l := &listening{path: path, lock: lock}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()

	if err := removeStale(path, logf); err != nil {
		return nil, err
	}

	tmpDir, err := os.MkdirTemp(dir, ".agent")
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("agent socket directory %s is too long to create the socket safely (needs %d bytes, a Unix socket allows %d): use a shorter path",
			dir, len(tmp), maxSocketPath)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*listening, error) {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	l.ln, l.ino = ln, st.Ino
	ok = true
	return l, nil
}

// close stops listening and removes the socket (if it is still ours).
func (l *listening) close() {
	l.ln.Close()
	var st unix.Stat_t
	if unix.Lstat(l.path, &st) == nil && st.Ino == l.ino {
		os.Remove(l.path)
	}
	l.lock.Close()
}

// checkDir refuses a socket directory that someone else could write (and so
// replace the socket in) or that belongs to another user.
func checkDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("agent socket directory %s: %w", dir, err)
	}
	mode := st.Mode & 0o7777
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("agent socket directory %s: not a directory: %w", dir, ErrUnsafeDir)
	case int(st.Uid) != geteuid():
		return fmt.Errorf("agent socket directory %s is owned by uid %d, not by you (uid %d): use a directory of your own (bench signer.state_dir or signer.socket): %w",
			dir, st.Uid, geteuid(), ErrUnsafeDir)
	case mode&0o022 != 0:
		return fmt.Errorf("agent socket directory %s has mode %04o: others may write it and replace the socket; run chmod go-w %s or use a private directory: %w",
			dir, mode, dir, ErrUnsafeDir)
	}
	return nil
}

// lockPath takes the agent's lock for path, or says which agent holds it.
func lockPath(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent socket lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		data := make([]byte, 32)
		n, _ := f.ReadAt(data, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data[:n])))
			return nil, &RunningError{Path: path, PID: pid}
		}
		return nil, fmt.Errorf("agent socket lock %s.lock: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// removeStale removes a socket nobody answers on; a live one is an error
// naming its process.
func removeStale(path string, logf func(string, ...any)) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("agent socket %s exists and is not a socket (%v): refusing to replace it: %w", path, fi.Mode().Type(), ErrNotSocket)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		pid := 0
		if p := peerOf(c.(*net.UnixConn)); p != nil {
			pid = p.PID
		}
		c.Close()
		return &RunningError{Path: path, PID: pid}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("agent socket %s: checking for a running agent: %w", path, err)
	}
	logf("signing agent: removing stale socket %s (nobody answers)", path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale agent socket: %w", err)
	}
	return nil
}

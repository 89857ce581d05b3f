package link

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"hilbench/harness/internal/lockfile"
)

// LockDir is where port locks live: the flock'd file hil-port<path>.lock (the resolved path
// with '/' as '_') and the UUCP lock LCK..<basename> that minicom and picocom honour. Empty (the
// default) means /var/lock, else /run/lock, else os.TempDir() when neither is writable (then
// only hil processes see the lock: other tools look in /var/lock). Tests point it at a
// temporary directory.
var LockDir = ""

// ErrInUse is wrapped by the error of an Open refused because another process (or another
// Port of this one) holds the port.
var ErrInUse = errors.New("serial port in use")

// portLock is the advisory lock of one port: the flock, then the UUCP lock file.
type portLock struct {
	path string // resolved device path
	fl   *lockfile.Lock
	uucp string // LCK.. file written by us
}

var lockDirOnce = sync.OnceValue(func() string {
	for _, d := range []string{"/var/lock", "/run/lock"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && unix.Access(d, unix.W_OK) == nil {
			return d
		}
	}
	return os.TempDir()
})

func lockDir() string {
	if LockDir != "" {
		return LockDir
	}
	return lockDirOnce()
}

// lockPort takes the lock of the port at path (resolved through symlinks): first the flock,
// so two hil processes never race for the LCK file, then the LCK file, honouring one of a live
// process (minicom, picocom) and replacing one of a dead process.
func lockPort(path string) (*portLock, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, classify(path, err)
	}
	real, _ = filepath.Abs(real)
	dir := lockDir()
	fl, err := lockfile.Acquire(filepath.Join(dir, "hil-port"+strings.ReplaceAll(real, "/", "_")+".lock"))
	if err != nil {
		return nil, inUse(path, real, err)
	}
	lk := &portLock{path: real, fl: fl, uucp: filepath.Join(dir, "LCK.."+filepath.Base(real))}
	if _, err := lockfile.CreateUUCP(lk.uucp); err != nil {
		fl.Release()
		return nil, inUse(path, real, err)
	}
	return lk, nil
}

func inUse(path, real string, err error) error {
	var held *lockfile.HeldError
	if !errors.As(err, &held) {
		return fmt.Errorf("link: locking %s: %w", path, err)
	}
	via := ""
	if real != path {
		via = ", opened as " + path
	}
	who := held.Holder.String()
	if held.Holder.PID == 0 {
		who = "another process"
	}
	return fmt.Errorf("link: port %s is in use by %s (lock %s%s): %w", real, who, held.Path, via, ErrInUse)
}

// release removes the LCK file (if still ours) and drops the flock. Nil-safe.
func (lk *portLock) release() error {
	if lk == nil {
		return nil
	}
	err := lockfile.RemoveUUCP(lk.uucp)
	return errors.Join(err, lk.fl.Release())
}

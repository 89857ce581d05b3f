// Package lockfile holds advisory locks that also hold for root: flock(2) on a lock file (the
// kernel drops it when the holder's last descriptor closes, so a crashed holder never leaves a
// lock behind), and UUCP-style LCK.. files for the serial port conventions other tools
// (minicom, picocom) follow.
//
// # Concepts
//
//   - Flock: Acquire opens (creating) a lock file and takes LOCK_EX|LOCK_NB on it; on success it
//     writes the holder's pid and command line into the file so a refused opener can name it.
//     The file is never removed (removing a flock'd file lets two openers hold locks on two
//     different inodes); Acquire checks that the file it locked is still the one at the path.
//   - Holder: who holds a lock, read from the lock file and /proc/PID/cmdline.
//   - UUCP LCK files: CreateUUCP writes the pid as ten ASCII digits and a newline ("%10d\n"),
//     with O_EXCL; a file of a live pid is honoured, one of a dead pid (or unreadable) is stale
//     and removed.
package lockfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Holder is the process holding a lock.
type Holder struct {
	PID     int
	Command string // its command line (from /proc/PID/cmdline, else as it recorded it); may be empty
}

// String renders "pid N (command)" or "pid N".
func (h Holder) String() string {
	if h.Command == "" {
		return "pid " + strconv.Itoa(h.PID)
	}
	return fmt.Sprintf("pid %d (%s)", h.PID, h.Command)
}

// HeldError reports a lock another open file description holds (another process, or this one).
type HeldError struct {
	Path   string // the lock file
	Holder Holder // PID 0 when the holder did not record itself yet
}

func (e *HeldError) Error() string {
	if e.Holder.PID == 0 {
		return fmt.Sprintf("%s is locked by another process", e.Path)
	}
	return fmt.Sprintf("%s is locked by %s", e.Path, e.Holder)
}

// Lock is a held flock.
type Lock struct {
	f    *os.File
	path string
}

// Path is the lock file.
func (l *Lock) Path() string { return l.path }

// Acquire takes an exclusive flock on the file at path without waiting (creating it mode 0644)
// and records this process in it (pid on the first line, command line on the second). When
// another holds it, the error is a *HeldError naming the holder.
func Acquire(path string) (*Lock, error) {
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o644)
		if errors.Is(err, fs.ErrPermission) {
			// Another user's lock file: flock needs only a descriptor; the holder goes unrecorded.
			f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_CLOEXEC, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("opening lock file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				h := readHolder(path)
				if h.PID == 0 && attempt == 0 {
					// No holder wrote itself within readHolder's wait: most likely it was
					// releasing (Release empties the file first), so the lock may be free now.
					// Once only: another user's holder cannot write itself at all.
					continue
				}
				return nil, &HeldError{Path: path, Holder: h}
			}
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		// The file may have been replaced between open and flock (someone removed it by hand):
		// then the lock guards nothing; try again on the file now at the path.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			f.Close()
			if attempt > 10 {
				return nil, fmt.Errorf("lock file %s keeps being replaced", path)
			}
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+SelfCommand()+"\n"), 0)
		}
		return &Lock{f: f, path: path}, nil
	}
}

// Release drops the lock (the file stays). Releasing twice is harmless.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	_ = f.Truncate(0) // no stale pid for a reader to name
	return f.Close()  // closing the last descriptor drops the flock
}

// readHolder reads who holds the lock file at path. The holder writes itself just after it
// takes the lock, so an empty file is read again for a short while.
func readHolder(path string) Holder {
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			lines := strings.SplitN(string(b), "\n", 3)
			if pid, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && pid > 0 {
				h := Holder{PID: pid, Command: Command(pid)}
				if h.Command == "" && len(lines) > 1 {
					h.Command = strings.TrimSpace(lines[1])
				}
				return h
			}
		}
		if time.Now().After(deadline) {
			return Holder{}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Command is the command line of process pid from /proc (arguments joined by spaces, the
// program as its base name), or "" when unknown.
func Command(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if i := strings.LastIndexByte(args[0], '/'); i >= 0 {
		args[0] = args[0][i+1:]
	}
	s := strings.Join(args, " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// SelfCommand is this process's command line as Command renders it.
func SelfCommand() string {
	if s := Command(os.Getpid()); s != "" {
		return s
	}
	return strings.Join(os.Args, " ")
}

// Alive reports whether process pid exists (EPERM: it exists, owned by another user).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ReadUUCP reads the pid in a UUCP LCK file: ten ASCII digits and a newline, or (older
// tools) a 4-byte binary int. ok is false when the file holds no pid.
func ReadUUCP(path string) (pid int, ok bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
		return pid, true, nil
	}
	if len(b) == 4 { // binary pid (Kermit, old UUCP)
		pid := int(int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24))
		if pid > 0 {
			return pid, true, nil
		}
	}
	return 0, false, nil
}

// CreateUUCP writes the UUCP lock file at path for this process ("%10d\n"). An existing file
// of a live process other than this one is honoured (a *HeldError naming it); one of a dead
// process, of this process, or holding no pid is stale and replaced. stale reports the pid of
// a stale file removed (0: none).
func CreateUUCP(path string) (stale int, err error) {
	for attempt := 0; attempt < 3; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, 0o644)
		if err == nil {
			_, werr := fmt.Fprintf(f, "%10d\n", os.Getpid())
			cerr := f.Close()
			if werr = errors.Join(werr, cerr); werr != nil {
				os.Remove(path)
				return stale, fmt.Errorf("writing %s: %w", path, werr)
			}
			return stale, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return stale, fmt.Errorf("creating %s: %w", path, err)
		}
		pid, ok, rerr := ReadUUCP(path)
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return stale, fmt.Errorf("reading %s: %w", path, rerr)
		}
		if ok && pid != os.Getpid() && Alive(pid) {
			return stale, &HeldError{Path: path, Holder: Holder{PID: pid, Command: Command(pid)}}
		}
		if rerr == nil {
			if !ok {
				// A file being written right now reads empty: give its writer a moment.
				time.Sleep(50 * time.Millisecond)
				if pid2, ok2, _ := ReadUUCP(path); ok2 && pid2 != os.Getpid() && Alive(pid2) {
					return stale, &HeldError{Path: path, Holder: Holder{PID: pid2, Command: Command(pid2)}}
				}
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return stale, fmt.Errorf("removing the stale lock %s: %w", path, err)
			}
			stale = pid
		}
	}
	return stale, fmt.Errorf("creating %s: it keeps reappearing", path)
}

// RemoveUUCP removes the UUCP lock file at path if it still names this process.
func RemoveUUCP(path string) error {
	pid, ok, err := ReadUUCP(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if ok && pid == os.Getpid() {
		return os.Remove(path)
	}
	return nil
}

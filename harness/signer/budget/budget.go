package budget

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WarnPercent is the share of the budget from which reservations carry a
// warning.
const WarnPercent = 90

// fileVersion is the counter file's format version.
const fileVersion = 1

// header is the counter file's first line.
type header struct {
	Version    int    `json:"hilbench_signature_budget"`
	DAKSHA256  string `json:"dak_sha256"`
	DAKSubject string `json:"dak_subject"`
	Created    string `json:"created,omitempty"` // RFC 3339, for people
}

// maxLine bounds a reservation line ("<count> <RFC 3339 time>\n").
const maxLine = 64

// Budget is the persistent signature counter of one DAK. It is safe for
// concurrent use, also by several processes sharing the counter file.
type Budget struct {
	path       string
	dakSHA256  string
	dakSubject string
	max        int64
	now        func() time.Time

	mu        sync.Mutex // serialises goroutines; flock serialises processes
	f         *os.File   // the counter file, O_APPEND; nil once closed
	headerLen int64
	used      int64 // last count read or written
}

// Reservation is one signature the caller may now make.
type Reservation struct {
	Used      int64 // signatures counted, including this one
	Max       int64 // the maximum; <= 0 is unlimited
	Remaining int64 // signatures left after this one; -1 when unlimited
	// Warning is set from WarnPercent of the budget on; Message then says
	// what to do.
	Warning bool
	Message string
}

// Open opens (or creates, with its directory) the counter file at path for
// the DAK certificate dak, with the given maximum number of signatures
// (<= 0: unlimited, still counted). The maximum is configuration, not
// state: the value given here applies.
func Open(path string, dak *x509.Certificate, maxSignatures int64) (*Budget, error) {
	if dak == nil {
		return nil, fmt.Errorf("opening signature budget %s: no DAK certificate", path)
	}
	sum := sha256.Sum256(dak.Raw)
	b := &Budget{
		path:       path,
		dakSHA256:  hex.EncodeToString(sum[:]),
		dakSubject: dak.Subject.String(),
		max:        maxSignatures,
		now:        time.Now,
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("opening signature budget: %w", err)
	}
	if err := b.create(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("opening signature budget: %w", err)
	}
	b.f = f
	if err := b.withLock(unix.LOCK_EX, b.load); err != nil {
		f.Close()
		b.f = nil
		return nil, err
	}
	return b, nil
}

// create writes a new counter file (header only) unless one exists. It
// writes a temporary file and links it into place, so a crash leaves either
// no counter or a complete header, and two processes cannot both create one.
func (b *Budget) create() error {
	if _, err := os.Lstat(b.path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("opening signature budget: %w", err)
	}
	h, err := json.Marshal(header{Version: fileVersion, DAKSHA256: b.dakSHA256, DAKSubject: b.dakSubject,
		Created: b.now().UTC().Format(time.RFC3339)})
	if err != nil {
		return fmt.Errorf("creating signature budget: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(b.path), ".budget-*")
	if err != nil {
		return fmt.Errorf("creating signature budget: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(h, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("creating signature budget %s: %w", tmp.Name(), err)
	}
	// CreateTemp made it 0600. Link fails if another process created the
	// counter meanwhile; then theirs is the counter.
	if err := os.Link(tmp.Name(), b.path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating signature budget: %w", err)
	}
	if err := syncDir(filepath.Dir(b.path)); err != nil {
		return fmt.Errorf("creating signature budget: %w", err)
	}
	return nil
}

// load reads the whole file: the header must name this DAK and the counts
// must run 1, 2, 3... A torn last line is dropped (see tail).
func (b *Budget) load() error {
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reading signature budget %s: %w", b.path, err)
	}
	r := bufio.NewReader(b.f)
	first, err := r.ReadBytes('\n')
	if err != nil {
		return &CorruptError{Path: b.path, Detail: "no complete header line"}
	}
	var h header
	dec := json.NewDecoder(bytes.NewReader(first))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return &CorruptError{Path: b.path, Detail: "header: " + err.Error()}
	}
	if h.Version != fileVersion {
		return &CorruptError{Path: b.path, Detail: fmt.Sprintf("format version %d, this build reads %d", h.Version, fileVersion)}
	}
	if h.DAKSHA256 != b.dakSHA256 {
		return &DAKMismatchError{Path: b.path, FileSHA256: h.DAKSHA256, FileSubject: h.DAKSubject,
			SHA256: b.dakSHA256, Subject: b.dakSubject}
	}
	b.headerLen = int64(len(first))
	var n int64
	for lineNo := 2; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a torn last line (no newline) is dealt with by tail
		}
		if err != nil {
			return fmt.Errorf("reading signature budget %s: %w", b.path, err)
		}
		got, perr := parseLine(line)
		if perr != nil || got != n+1 {
			return &CorruptError{Path: b.path, Detail: fmt.Sprintf("line %d: %q does not continue the count %d", lineNo, bytes.TrimSpace(line), n)}
		}
		n = got
	}
	used, err := b.tail()
	if err != nil {
		return err
	}
	if used != n {
		return &CorruptError{Path: b.path, Detail: fmt.Sprintf("last count %d, counted %d", used, n)}
	}
	b.used = used
	return nil
}

// tail returns the count on the file's last line, reading only the end of
// the file. The lock must be held.
//
// A last line without its newline is a reservation whose Reserve never
// returned (the process died before its fsync completed), so no signature
// was made for it: it is cut off, and the count is the line before.
func (b *Budget) tail() (int64, error) {
	fi, err := b.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("reading signature budget %s: %w", b.path, err)
	}
	size := fi.Size()
	if size < b.headerLen {
		return 0, &CorruptError{Path: b.path, Detail: fmt.Sprintf("file is %d bytes, shorter than its header", size)}
	}
	for {
		if size == b.headerLen {
			return 0, nil
		}
		start := max(b.headerLen, size-2*maxLine)
		buf := make([]byte, size-start)
		if _, err := b.f.ReadAt(buf, start); err != nil {
			return 0, fmt.Errorf("reading signature budget %s: %w", b.path, err)
		}
		if buf[len(buf)-1] != '\n' {
			cut := bytes.LastIndexByte(buf, '\n') + 1 // 0 if none: cut to the header
			if cut == 0 && start > b.headerLen {
				return 0, &CorruptError{Path: b.path, Detail: fmt.Sprintf("the last %d bytes are not a count line", len(buf))}
			}
			if err := b.f.Truncate(start + int64(cut)); err != nil {
				return 0, fmt.Errorf("cutting the torn last line of signature budget %s: %w", b.path, err)
			}
			if err := b.f.Sync(); err != nil {
				return 0, fmt.Errorf("signature budget %s: fsync: %w", b.path, err)
			}
			size = start + int64(cut)
			continue
		}
		line := buf[bytes.LastIndexByte(buf[:len(buf)-1], '\n')+1:]
		n, err := parseLine(line)
		if err != nil {
			return 0, &CorruptError{Path: b.path, Detail: fmt.Sprintf("last line %q: %v", bytes.TrimSpace(line), err)}
		}
		return n, nil
	}
}

// parseLine reads "<count> <time>\n".
func parseLine(line []byte) (int64, error) {
	if len(line) > maxLine {
		return 0, errors.New("line too long")
	}
	num, _, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
	if !ok {
		return 0, errors.New("no time")
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bad count %q", num)
	}
	return n, nil
}

// Close closes the counter file. The count on disk is always current.
func (b *Budget) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return nil
	}
	err := b.f.Close()
	b.f = nil
	return err
}

// Path is the counter file.
func (b *Budget) Path() string { return b.path }

// DAKSHA256 is the SHA-256 (hex) of the DAK certificate this counter counts.
func (b *Budget) DAKSHA256() string { return b.dakSHA256 }

// Max is the maximum number of signatures; <= 0 is unlimited.
func (b *Budget) Max() int64 { return b.max }

// Used is the number of signatures counted, re-read from the file so that
// other processes' reservations show. If the file cannot be read it returns
// the last value this Budget saw.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return b.used
	}
	// LOCK_EX, not LOCK_SH: tail may cut a torn line.
	_ = b.withLockNoMu(unix.LOCK_EX, func() error {
		n, err := b.tail()
		if err == nil {
			b.used = n
		}
		return err
	})
	return b.used
}

// Remaining is the number of signatures left, or -1 when unlimited.
func (b *Budget) Remaining() int64 {
	used := b.Used()
	if b.max <= 0 {
		return -1
	}
	return max(b.max-used, 0)
}

// Reserve counts one signature before it is made: it returns only after
// used+1 is on disk (appended and fsynced). Once the maximum is reached it
// returns *ExhaustedError (errors.Is(err, ErrExhausted)) and counts nothing.
func (b *Budget) Reserve() (Reservation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return Reservation{}, fmt.Errorf("reserving a signature: budget %s: %w", b.path, os.ErrClosed)
	}
	var r Reservation
	err := b.withLockNoMu(unix.LOCK_EX, func() error {
		n, err := b.tail()
		if err != nil {
			return err
		}
		b.used = n
		if b.max > 0 && n >= b.max {
			return &ExhaustedError{Path: b.path, Used: n, Max: b.max, Subject: b.dakSubject}
		}
		line := fmt.Appendf(nil, "%d %s\n", n+1, b.now().UTC().Format(time.RFC3339))
		if _, err := b.f.Write(line); err != nil {
			return fmt.Errorf("reserving a signature in %s: %w", b.path, err)
		}
		if err := b.f.Sync(); err != nil {
			return fmt.Errorf("reserving a signature in %s: fsync: %w", b.path, err)
		}
		b.used = n + 1
		r = b.reservation(n + 1)
		return nil
	})
	if err != nil {
		return Reservation{}, err
	}
	return r, nil
}

func (b *Budget) reservation(used int64) Reservation {
	r := Reservation{Used: used, Max: b.max, Remaining: -1}
	if b.max <= 0 {
		return r
	}
	r.Remaining = b.max - used
	if used*100 >= b.max*WarnPercent {
		r.Warning = true
		r.Message = fmt.Sprintf("DAK signature budget at %d%%: %d/%d signatures used, %d left; "+
			"request a new DAK for this device profile before this one runs out (\"Amazon Sidewalk bulk provisioning workflow\", AWS IoT Wireless Developer Guide)",
			used*100/b.max, used, b.max, r.Remaining)
	}
	return r
}

// withLock runs fn with b.mu and the file lock held.
func (b *Budget) withLock(how int, fn func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.withLockNoMu(how, fn)
}

func (b *Budget) withLockNoMu(how int, fn func() error) error {
	fd := int(b.f.Fd())
	for {
		err := unix.Flock(fd, how)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return fmt.Errorf("locking signature budget %s: %w", b.path, err)
		}
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	return fn()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

package audit

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
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hilbench/harness/pki"
)

// ErrInvalidRecord: Append was given a record it cannot index.
var ErrInvalidRecord = errors.New("invalid audit record")

// maxRecord bounds one line (a chain of a few certificates is ~3 KiB).
const maxRecord = 1 << 20

// Peer identifies the process that asked, from the socket's peer
// credentials (SO_PEERCRED).
type Peer struct {
	PID int `json:"pid"`
	UID int `json:"uid"`
}

// Record is one issued certificate.
type Record struct {
	Time       time.Time `json:"time"`
	Target     string    `json:"target,omitempty"`     // as the client named it
	Client     *Peer     `json:"client,omitempty"`     // nil when unknown
	RequestID  string    `json:"request_id,omitempty"` // the client's request id
	CSRSHA256  string    `json:"csr_sha256"`           // SHA-256 of the CSR DER, lower-case hex
	Serial     string    `json:"serial"`               // certificate serial, upper-case hex
	CertSHA256 string    `json:"cert_sha256"`          // SHA-256 of the certificate DER
	Subject    string    `json:"subject"`              // certificate subject (RFC 2253)
	DAKSHA256  string    `json:"dak_sha256"`           // SHA-256 of the DAK certificate DER
	BudgetUsed int64     `json:"budget_used,omitempty"`
	BudgetMax  int64     `json:"budget_max,omitempty"`
	ChainPEM   string    `json:"chain_pem"` // leaf, DAK, intermediates
}

// FromIssued fills the certificate fields of a Record from an issuance.
func FromIssued(is *pki.Issued) Record {
	r := Record{ChainPEM: string(is.ChainPEM)}
	if is.CSR != nil {
		r.CSRSHA256 = SHA256Hex(is.CSR.Raw)
	}
	if c := is.Certificate; c != nil {
		r.Serial = SerialHex(c)
		r.CertSHA256 = SHA256Hex(c.Raw)
		r.Subject = c.Subject.String()
	}
	if len(is.Chain) > 1 {
		r.DAKSHA256 = SHA256Hex(is.Chain[1].Raw)
	}
	return r
}

// SerialHex is the certificate serial number as `openssl x509 -serial`
// prints it: upper-case hex of its magnitude, an even number of digits.
func SerialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil || c.SerialNumber.Sign() == 0 {
		return "00"
	}
	return fmt.Sprintf("%X", c.SerialNumber.Bytes())
}

// SHA256Hex is the lower-case hex SHA-256 of data.
func SHA256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// entry locates a record in the file.
type entry struct {
	off int64
	n   int
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	path string

	mu sync.Mutex
	f  *os.File // nil once closed
	// queue holds the records waiting for the next group commit (Append).
	queueMu  sync.Mutex
	queue    []*appendReq
	index    map[[32]byte]entry
	count    int
	perDAK   map[string]int // records per DAK certificate SHA-256
	warnings []string
}

// Open opens (creating it and its directory if needed) the audit log at
// path and indexes the records in it. Lines that are not records are
// skipped and listed in Warnings. A log writable by group or others is
// refused: anyone could forge the records that retries are answered from.
func Open(path string) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("opening audit log %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		f.Close()
		return nil, fmt.Errorf("opening audit log %s: mode %04o lets others write it; run chmod 600 %s", path, perm, path)
	}
	l := &Log{path: path, f: f, index: map[[32]byte]entry{}, perDAK: map[string]int{}}
	if err := l.withLock(l.load); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// load indexes the file and terminates a truncated last line. The lock is
// held.
func (l *Log) load() error {
	r := bufio.NewReaderSize(io.NewSectionReader(l.f, 0, 1<<62), 64<<10)
	var off int64
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("reading audit log %s: %w", l.path, err)
		}
		if err == io.EOF {
			// No newline: a write cut short. Terminate it so the next
			// record is a line of its own.
			l.warnf("audit log %s: line %d is truncated (%d bytes, power cut mid-write?): skipped", l.path, lineNo, len(line))
			if _, werr := l.f.Write([]byte{'\n'}); werr != nil {
				return fmt.Errorf("audit log %s: terminating truncated line %d: %w", l.path, lineNo, werr)
			}
			if serr := l.f.Sync(); serr != nil {
				return fmt.Errorf("audit log %s: fsync: %w", l.path, serr)
			}
			return nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			if key, dak, ok := l.parseIndexable(line); ok {
				l.index[key] = entry{off: off, n: len(line)}
				l.count++
				l.perDAK[dak]++
			} else {
				l.warnf("audit log %s: line %d is not a record: skipped", l.path, lineNo)
			}
		}
		off += int64(len(line))
	}
}

func (l *Log) parseIndexable(line []byte) ([32]byte, string, bool) {
	var rec Record
	if len(line) > maxRecord || json.Unmarshal(line, &rec) != nil {
		return [32]byte{}, "", false
	}
	k, ok := csrKey(rec.CSRSHA256)
	return k, rec.DAKSHA256, ok
}

func csrKey(s string) ([32]byte, bool) {
	var k [32]byte
	if len(s) != 64 {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, false
	}
	return k, true
}

func (l *Log) warnf(format string, args ...any) {
	l.warnings = append(l.warnings, fmt.Sprintf(format, args...))
}

// Warnings lists what Open skipped, for the operator.
func (l *Log) Warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.warnings...)
}

// Path is the log file.
func (l *Log) Path() string { return l.path }

// Len is the number of indexed records.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// CountDAK is the number of records issued by the DAK whose certificate
// has this SHA-256 (hex): a lower bound for its signature count.
func (l *Log) CountDAK(dakSHA256 string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perDAK[dakSHA256]
}

// Append writes rec as one line and fsyncs it; when it returns nil the
// record is on disk. A zero Time is set to now. A record of a certificate
// the log holds already (the same CSR and certificate) is not written again:
// a caller that cannot know whether an earlier append got through (a repair
// after a crash) appends once.
func (l *Log) Append(rec Record) error {
	key, ok := csrKey(rec.CSRSHA256)
	if !ok {
		return fmt.Errorf("appending to audit log: CSR SHA-256 %q: %w", rec.CSRSHA256, ErrInvalidRecord)
	}
	if rec.ChainPEM == "" {
		return fmt.Errorf("appending to audit log: no chain: %w", ErrInvalidRecord)
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("appending to audit log: %w", err)
	}
	line = append(line, '\n')
	if len(line) > maxRecord {
		return fmt.Errorf("appending to audit log: record is %d bytes: %w", len(line), ErrInvalidRecord)
	}
	a := &appendReq{key: key, cert: rec.CertSHA256, dak: rec.DAKSHA256, line: line, done: make(chan struct{})}
	l.queueMu.Lock()
	l.queue = append(l.queue, a)
	l.queueMu.Unlock()

	// Group commit: whoever holds mu next writes every queued line and fsyncs once, so
	// concurrent appenders share an fsync instead of queueing for one each.
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-a.done: // written by an appender before us
		return a.err
	default:
	}
	l.queueMu.Lock()
	batch := l.queue
	l.queue = nil
	l.queueMu.Unlock()
	err = l.appendBatch(batch)
	for _, b := range batch {
		b.err = err
		close(b.done)
	}
	return err
}

// appendReq is a record waiting for the next group commit.
type appendReq struct {
	key  [32]byte
	cert string // CertSHA256
	dak  string
	line []byte
	err  error
	done chan struct{}
}

// appendBatch writes the lines in one write, fsyncs once, then indexes them. mu is held.
func (l *Log) appendBatch(batch []*appendReq) error {
	if l.f == nil {
		return fmt.Errorf("appending to audit log %s: %w", l.path, os.ErrClosed)
	}
	return l.withLockNoMu(func() error {
		fi, err := l.f.Stat()
		if err != nil {
			return fmt.Errorf("appending to audit log %s: %w", l.path, err)
		}
		off := fi.Size()
		if off > 0 {
			// A write that failed half-way (disk full) must not glue
			// this record to its fragment.
			var last [1]byte
			if _, err := l.f.ReadAt(last[:], off-1); err != nil {
				return fmt.Errorf("appending to audit log %s: %w", l.path, err)
			}
			if last[0] != '\n' {
				if _, err := l.f.Write([]byte{'\n'}); err != nil {
					return fmt.Errorf("appending to audit log %s: %w", l.path, err)
				}
				off++
			}
		}
		var buf []byte
		var write []*appendReq
		inBatch := map[[32]byte]string{}
		for _, a := range batch {
			if c, ok := inBatch[a.key]; a.cert != "" && (ok && c == a.cert || l.holds(a.key, a.cert)) {
				continue
			}
			inBatch[a.key] = a.cert
			write = append(write, a)
			buf = append(buf, a.line...)
		}
		if len(write) == 0 {
			return nil
		}
		if _, err := l.f.Write(buf); err != nil {
			return fmt.Errorf("appending to audit log %s: %w", l.path, err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("appending to audit log %s: fsync: %w", l.path, err)
		}
		for _, a := range write {
			l.index[a.key] = entry{off: off, n: len(a.line)}
			off += int64(len(a.line))
			l.count++
			l.perDAK[a.dak]++
		}
		return nil
	})
}

// holds says whether the latest record of the CSR is of this certificate. mu is held.
func (l *Log) holds(key [32]byte, certSHA256 string) bool {
	rec, ok := l.read(key)
	return ok && rec.CertSHA256 == certSHA256
}

// Find returns the latest record for the CSR whose DER has this SHA-256
// (lower-case hex), from the file.
func (l *Log) Find(csrSHA256 string) (*Record, bool) {
	key, ok := csrKey(csrSHA256)
	if !ok {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read(key)
}

// read reads the latest record of a CSR from the file. mu is held.
func (l *Log) read(key [32]byte) (*Record, bool) {
	e, ok := l.index[key]
	if !ok || l.f == nil {
		return nil, false
	}
	buf := make([]byte, e.n)
	if _, err := l.f.ReadAt(buf, e.off); err != nil {
		return nil, false
	}
	var rec Record
	if err := json.Unmarshal(buf, &rec); err != nil {
		return nil, false
	}
	if k, ok := csrKey(rec.CSRSHA256); !ok || k != key {
		return nil, false
	}
	return &rec, true
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func (l *Log) withLock(fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.withLockNoMu(fn)
}

// withLockNoMu holds an exclusive flock so that appends from several
// processes never interleave and offsets are exact.
func (l *Log) withLockNoMu(fn func() error) error {
	fd := int(l.f.Fd())
	for {
		err := unix.Flock(fd, unix.LOCK_EX)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return fmt.Errorf("locking audit log %s: %w", l.path, err)
		}
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	return fn()
}

// Records reads every record in the file, oldest first; lines that are not records are skipped
// (Open listed them in Warnings).
func (l *Log) Records() ([]Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil, fmt.Errorf("reading audit log %s: %w", l.path, os.ErrClosed)
	}
	var recs []Record
	r := bufio.NewReaderSize(io.NewSectionReader(l.f, 0, 1<<62), 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 && err == nil {
			var rec Record
			if len(line) <= maxRecord && json.Unmarshal(line, &rec) == nil && rec.ChainPEM != "" {
				recs = append(recs, rec)
			}
		}
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading audit log %s: %w", l.path, err)
		}
	}
}

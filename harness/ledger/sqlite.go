package ledger

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLiteBusyTimeout is how long a write waits for another process's write transaction on the
// same ledger file before it fails with ErrUnavailable.
const SQLiteBusyTimeout = 30 * time.Second

// busyTimeout is SQLiteBusyTimeout; tests shorten it.
var busyTimeout = SQLiteBusyTimeout

// SQLiteStore is a ledger in one SQLite file (WAL mode, synchronous=FULL: a record is on disk
// when the call that wrote it returns). Several processes may share the file: every write
// transaction starts with BEGIN IMMEDIATE, so writers queue for the lock (up to
// SQLiteBusyTimeout) instead of deadlocking on a lock upgrade.
type SQLiteStore struct {
	*core
	be *sqliteBackend
}

var _ Store = (*SQLiteStore)(nil)

// sqliteMagic starts every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// OpenSQLite opens the ledger file at path, creating it (mode 0600) and its directory when
// missing, and brings its schema up to date. A file that is not a SQLite database, is damaged,
// or holds tables that are not a ledger's fails with ErrCorrupt; a ledger of a newer schema with
// ErrSchemaTooNew. Nothing is written to the file in either case.
func OpenSQLite(path string) (*SQLiteStore, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	if strings.ContainsAny(abs, "?#") {
		return nil, fmt.Errorf("ledger %s: a ledger path may not contain ? or #", abs)
	}
	fail := func(err error) (*SQLiteStore, error) { return nil, fmt.Errorf("ledger %s: %w", abs, err) }
	if err := prepareSQLiteFile(abs); err != nil {
		return fail(err)
	}

	// Look before touching: a probe connection with no pragma that writes (journal_mode=WAL
	// rewrites the header) checks the file is sound and is a ledger this code may migrate.
	probe, err := sql.Open("sqlite", abs+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fail(err)
	}
	err = probeSQLite(probe, abs)
	probe.Close()
	if err != nil {
		return fail(err)
	}

	// temp_store(MEMORY): the group commit's savepoints journal the pages a write changes that
	// an earlier write of its batch changed (the DAK's row, shared index pages) into the
	// statement sub-journal, a temporary file otherwise: a write(2) per page per write. It
	// undoes a write that failed; a crash is recovered from the WAL, never from it.
	q := fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)&_txlock=immediate",
		busyTimeout.Milliseconds())
	db, err := sql.Open("sqlite", abs+q)
	if err != nil {
		return fail(err)
	}
	// Readers run side by side (WAL); writers queue on writeMu. Idle connections are kept, so
	// a busy station does not reopen (and re-pragma) one per statement.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	be := &sqliteBackend{db: db, path: abs}
	s := &SQLiteStore{core: newCore(be), be: be}
	ctx := context.Background()
	err = be.tx(ctx, true, func(x execer) error {
		var appID int64
		if err := x.queryRow(ctx, `PRAGMA application_id`).Scan(&appID); err != nil {
			return err
		}
		tables, err := sqliteTables(ctx, x)
		if err != nil {
			return err
		}
		if err := migrate(ctx, x, "sqlite", tables, true, be.timeArg(s.stamp())); err != nil {
			return err
		}
		if appID == 0 {
			_, err = x.exec(ctx, fmt.Sprintf(`PRAGMA application_id = %d`, sqliteApplicationID))
		}
		return err
	})
	if err != nil {
		db.Close()
		return fail(be.classify(err))
	}
	// From here on the schema stands: statements are prepared once (not during migration,
	// whose statements name tables its own transaction creates).
	be.stmts = &stmtCache{db: db}
	return s, nil
}

// prepareSQLiteFile creates the ledger's directory and an empty file with mode 0600, or checks
// that an existing file starts like a SQLite database.
func prepareSQLiteFile(abs string) error {
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncDir(filepath.Dir(abs))
		}
		return err
	}
	if !errors.Is(err, os.ErrExist) {
		return err
	}
	f, err = os.Open(abs)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: it is a directory", ErrCorrupt)
	}
	if fi.Size() == 0 {
		return nil // created by an earlier open that stopped before writing; SQLite starts it afresh
	}
	head := make([]byte, 100)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if n < len(head) || !bytes.HasPrefix(head, sqliteMagic) {
		return fmt.Errorf("%w: not a SQLite database (it does not start with %q)", ErrCorrupt, strings.TrimSuffix(string(sqliteMagic), "\x00"))
	}
	// A file shorter than its header says was cut off. Only without a WAL: a checkpoint that a
	// crash interrupted leaves the file to be completed from the WAL at open.
	pageSize := int64(binary.BigEndian.Uint16(head[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(binary.BigEndian.Uint32(head[28:32]))
	valid := binary.BigEndian.Uint32(head[24:28]) == binary.BigEndian.Uint32(head[92:96])
	if wal, err := os.Stat(abs + "-wal"); (err != nil || wal.Size() == 0) && valid && pages > 0 && fi.Size() < pages*pageSize {
		return fmt.Errorf("%w: cut short: %d bytes, where its header says %d pages of %d", ErrCorrupt, fi.Size(), pages, pageSize)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// quickCheckMax is the largest file probeSQLite walks page by page (about 0.1 s per 10 MiB); a
// larger ledger gets the header's size check and SQLite's own checks as it reads.
const quickCheckMax = 256 << 20

// probeSQLite checks the file is sound (quick_check walks every page) and is a ledger this code
// may open, reading only.
func probeSQLite(db *sql.DB, abs string) error {
	ctx := context.Background()
	b := &sqliteBackend{db: db, path: abs}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	check := `PRAGMA quick_check`
	if fi.Size() > quickCheckMax {
		check = `SELECT 'ok'`
	}
	return b.classify(b.tx(ctx, false, func(x execer) error {
		rs, err := x.query(ctx, check)
		if err != nil {
			return err
		}
		var msgs []string
		for rs.Next() {
			var m string
			if err := rs.Scan(&m); err != nil {
				rs.Close()
				return err
			}
			msgs = append(msgs, m)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if len(msgs) != 1 || msgs[0] != "ok" {
			if len(msgs) > 5 {
				msgs = append(msgs[:5], "…")
			}
			return fmt.Errorf("%w: damaged (quick_check: %s)", ErrCorrupt, strings.Join(msgs, "; "))
		}
		var appID int64
		if err := x.queryRow(ctx, `PRAGMA application_id`).Scan(&appID); err != nil {
			return err
		}
		if appID != 0 && appID != sqliteApplicationID {
			return fmt.Errorf("%w: a SQLite database of another application (application_id %#x)", ErrCorrupt, appID)
		}
		tables, err := sqliteTables(ctx, x)
		if err != nil {
			return err
		}
		// Run the checks of migrate without writing: its first write is the one thing it
		// does after deciding, so an error it returns before that leaves the file untouched.
		return migrateCheckOnly(ctx, x, tables)
	}))
}

// migrateCheckOnly runs migrate's decisions on a read transaction: it stops at the first write
// (which a read-only probe cannot make) and reports any error found before it.
func migrateCheckOnly(ctx context.Context, x execer, tables []string) error {
	err := migrate(ctx, readOnly{x}, "sqlite", tables, true, nil)
	if errors.Is(err, errProbeStop) {
		return nil
	}
	return err
}

var errProbeStop = errors.New("probe stops before writing")

// readOnly refuses every exec, so migrate stops at its first write.
type readOnly struct{ execer }

func (readOnly) exec(context.Context, string, ...any) (int64, error) { return 0, errProbeStop }

func sqliteTables(ctx context.Context, x execer) ([]string, error) {
	var tables []string
	err := each(ctx, x, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`, func(r rows) error {
		var t string
		if err := r.Scan(&t); err != nil {
			return err
		}
		tables = append(tables, t)
		return nil
	})
	return tables, err
}

// Path is the ledger file's absolute path.
func (s *SQLiteStore) Path() string { return s.be.path }

// sqliteBackend is the SQLite side of core.
type sqliteBackend struct {
	db   *sql.DB
	path string
	// writeMu queues this process's writers, so they wait on a mutex rather than polling
	// SQLite's busy handler against each other; other processes still go through the lock.
	writeMu sync.Mutex
	// queue holds the writes waiting for the next group commit (groupCommit).
	queueMu sync.Mutex
	queue   []*sqliteWrite
	stmts   *stmtCache // nil: statements are prepared each time (the probe at open)
}

func (b *sqliteBackend) name() string      { return "sqlite" }
func (b *sqliteBackend) forUpdate() string { return "" }
func (b *sqliteBackend) describe() string  { return b.path }
func (b *sqliteBackend) close() error {
	if b.stmts != nil {
		b.stmts.close()
	}
	return b.db.Close()
}

func (b *sqliteBackend) read() execer {
	if b.stmts != nil {
		return sqlExecer{cachedQ{cache: b.stmts}}
	}
	return sqlExecer{b.db}
}

func (b *sqliteBackend) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Truncate(time.Microsecond).Format(sqliteTimeFormat)
}

func (b *sqliteBackend) tx(ctx context.Context, write bool, fn func(execer) error) error {
	if write {
		return b.groupCommit(ctx, fn)
	}
	// A read-only BeginTx is a deferred BEGIN, a snapshot that never takes the write lock.
	return b.runTx(ctx, false, func(x execer) error { return fn(x) })
}

// runTx runs fn in one transaction and commits it. The DSN's _txlock=immediate makes a
// read-write BeginTx "BEGIN IMMEDIATE".
func (b *sqliteBackend) runTx(ctx context.Context, write bool, fn func(execer) error) error {
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: !write})
	if err != nil {
		return err
	}
	x := sqlExecer{tx}
	if b.stmts != nil {
		x = sqlExecer{cachedQ{cache: b.stmts, tx: tx}}
	}
	if err := fn(x); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// A write waiting for the group commit.
type sqliteWrite struct {
	fn   func(execer) error
	err  error
	done chan struct{}
}

// groupCommit runs fn in a write transaction shared with the writes queued while the previous
// one committed: with synchronous=FULL each commit costs an fsync, so concurrent writers (the
// signing agent's clients, a station's slots) share one instead of queueing for one each. Every
// write runs in its own savepoint: one that fails is undone alone and gets its own error; the
// others commit together, in queue order, as if one after the other.
func (b *sqliteBackend) groupCommit(ctx context.Context, fn func(execer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &sqliteWrite{fn: fn, done: make(chan struct{})}
	b.queueMu.Lock()
	b.queue = append(b.queue, w)
	b.queueMu.Unlock()

	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	select {
	case <-w.done: // a leader before us committed it
		return w.err
	default:
	}
	b.queueMu.Lock()
	batch := b.queue
	b.queue = nil
	b.queueMu.Unlock()
	// The statements ignore their writers' cancellation: SQLite answers an interrupted write
	// inside a transaction by rolling the whole transaction back, other writers' work with it.
	bctx := context.WithoutCancel(ctx)
	err := b.runTx(bctx, true, func(x execer) error {
		x = uncancelled{x, bctx}
		for _, w := range batch {
			if _, err := x.exec(bctx, `SAVEPOINT write`); err != nil {
				return err
			}
			if w.err = w.fn(x); w.err != nil {
				if _, err := x.exec(bctx, `ROLLBACK TO SAVEPOINT write`); err != nil {
					return err
				}
			}
			if _, err := x.exec(bctx, `RELEASE SAVEPOINT write`); err != nil {
				return err
			}
		}
		return nil
	})
	for _, w := range batch {
		if err != nil && w.err == nil {
			w.err = err
		}
		close(w.done)
	}
	return w.err
}

// uncancelled runs statements with one context whatever context their caller passes.
type uncancelled struct {
	x   execer
	ctx context.Context
}

func (u uncancelled) exec(_ context.Context, q string, args ...any) (int64, error) {
	return u.x.exec(u.ctx, q, args...)
}

func (u uncancelled) query(_ context.Context, q string, args ...any) (rows, error) {
	return u.x.query(u.ctx, q, args...)
}

func (u uncancelled) queryRow(_ context.Context, q string, args ...any) row {
	return u.x.queryRow(u.ctx, q, args...)
}

func (b *sqliteBackend) classify(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case sqlite3.SQLITE_ERROR:
		// A damaged header or schema table: SQLite says so with its generic error code
		// (found by FuzzOpenSQLite: a schema format number out of range).
		if msg := se.Error(); strings.Contains(msg, "unsupported file format") || strings.Contains(msg, "malformed database schema") {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%w: locked by another process for longer than %s: %w", ErrUnavailable, busyTimeout, err)
	case sqlite3.SQLITE_CONSTRAINT:
		if strings.Contains(se.Error(), "records_live_device") || strings.Contains(se.Error(), "records.device_") {
			return fmt.Errorf("%w: %w", ErrLiveRecord, err)
		}
	}
	return err
}

// sqlExecer runs statements through database/sql (a *sql.DB or *sql.Tx).
type sqlExecer struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (e sqlExecer) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := e.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (e sqlExecer) query(ctx context.Context, q string, args ...any) (rows, error) {
	rs, err := e.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

func (e sqlExecer) queryRow(ctx context.Context, q string, args ...any) row {
	return sqlRow{e.q.QueryRowContext(ctx, q, args...)}
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

// stmtCache keeps each statement prepared once: parsing SQL is most of a small transaction's
// CPU time in SQLite, and the ledger runs the same few statements for every device.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[q]; ok {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = s
	return s, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
}

// cachedQ runs statements through the cache, on the database or inside a transaction.
type cachedQ struct {
	cache *stmtCache
	tx    *sql.Tx // nil: the database
}

// cacheable: data statements and the group commit's savepoints (three of them per write);
// schema statements (migrations) run once and may name tables the same transaction creates,
// which a statement prepared outside it cannot see.
func cacheable(query string) bool {
	q := strings.TrimSpace(query)
	for _, verb := range []string{"SELECT", "INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE", "ROLLBACK TO"} {
		if len(q) >= len(verb) && strings.EqualFold(q[:len(verb)], verb) {
			return true
		}
	}
	return false
}

func (q cachedQ) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if !cacheable(query) {
		return nil, errNotCached
	}
	s, err := q.cache.get(ctx, query)
	if err != nil || q.tx == nil {
		return s, err
	}
	return q.tx.StmtContext(ctx, s), nil
}

// errNotCached: the statement runs unprepared.
var errNotCached = errors.New("not a cached statement")

func (q cachedQ) direct() interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
} {
	if q.tx != nil {
		return q.tx
	}
	return q.cache.db
}

func (q cachedQ) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := q.stmt(ctx, query)
	if errors.Is(err, errNotCached) {
		return q.direct().ExecContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

func (q cachedQ) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := q.stmt(ctx, query)
	if errors.Is(err, errNotCached) {
		return q.direct().QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (q cachedQ) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := q.stmt(ctx, query)
	if err != nil {
		// Not cached, or a Row carrying the error: the same query fails again unprepared.
		return q.direct().QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}

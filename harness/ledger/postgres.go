package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresConnectTimeout bounds one connection attempt when the DSN sets no connect_timeout.
const PostgresConnectTimeout = 10 * time.Second

// PostgresStore is a ledger in a PostgreSQL database, shared by several stations. A reservation
// locks its DAK's row (SELECT ... FOR UPDATE) before it reads anything, so stations sharing a DAK
// reserve one after the other and never exceed its maximum together; a race on the unique
// indexes of live records (two stations, two DAKs, one device) or a serialization failure
// reruns the transaction, up to a few times.
type PostgresStore struct {
	*core
	be *pgBackend
}

var _ Store = (*PostgresStore)(nil)

// pgMigrationLock is the advisory lock key that serializes migrations of one database.
const pgMigrationLock = 0x48494c4c4544 // "HILLED"

// OpenPostgres connects to the database the DSN names (a postgres:// URL or key=value
// string, as libpq takes; the password may also come from PGPASSWORD or ~/.pgpass) and brings
// its schema up to date. A server that cannot be reached fails with ErrUnavailable, naming
// host, port and database but never the password. A database that holds a daks or records
// table that is not a ledger's fails with ErrCorrupt; a ledger of a newer schema with
// ErrSchemaTooNew, and nothing is written then.
func OpenPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors redact the password; say no more than they do.
		return nil, fmt.Errorf("ledger: PostgreSQL DSN: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = PostgresConnectTimeout
	}
	be := &pgBackend{desc: describePostgres(cfg.ConnConfig)}
	fail := func(err error) (*PostgresStore, error) {
		return nil, fmt.Errorf("ledger %s: %w", be.desc, be.classify(err))
	}
	be.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	s := &PostgresStore{core: newCore(be), be: be}
	err = be.tx(ctx, true, func(x execer) error {
		if _, err := x.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrationLock)); err != nil {
			return err
		}
		var tables []string
		if err := each(ctx, x, `SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`, func(r rows) error {
			var t string
			if err := r.Scan(&t); err != nil {
				return err
			}
			tables = append(tables, t)
			return nil
		}); err != nil {
			return err
		}
		return migrate(ctx, x, "postgres", tables, false, be.timeArg(s.stamp()))
	})
	if err != nil {
		be.pool.Close()
		return fail(err)
	}
	return s, nil
}

// describePostgres names a database without its password: postgres://user@host:port/db.
func describePostgres(c *pgx.ConnConfig) string {
	host := c.Host
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("postgres://%s@:%d/%s?host=%s", url.PathEscape(c.User), c.Port, url.PathEscape(c.Database), url.QueryEscape(host))
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", url.PathEscape(c.User), host, c.Port, url.PathEscape(c.Database))
}

// Pool is the store's connection pool (for tools and tests that need raw SQL).
func (s *PostgresStore) Pool() *pgxpool.Pool { return s.be.pool }

// pgBackend is the PostgreSQL side of core.
type pgBackend struct {
	pool *pgxpool.Pool
	desc string
}

func (b *pgBackend) name() string      { return "postgres" }
func (b *pgBackend) forUpdate() string { return " FOR UPDATE" }
func (b *pgBackend) describe() string  { return b.desc }
func (b *pgBackend) close() error      { b.pool.Close(); return nil }
func (b *pgBackend) read() execer      { return pgExecer{b.pool} }

func (b *pgBackend) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Truncate(time.Microsecond)
}

// pgAttempts is how often a transaction runs before a retryable failure is returned.
const pgAttempts = 5

func (b *pgBackend) tx(ctx context.Context, write bool, fn func(execer) error) error {
	opts := pgx.TxOptions{}
	if !write {
		opts = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	}
	for attempt := 1; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, b.pool, opts, func(tx pgx.Tx) error { return fn(pgExecer{tx}) })
		if err == nil || attempt == pgAttempts || ctx.Err() != nil || !pgRetryable(err) {
			return err
		}
		select {
		case <-time.After(time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// pgRetryable says whether a transaction that failed so may be run again: a serialization
// failure or deadlock, a race on a live-record index (the rerun sees the winner's record), or a
// connection that failed before anything was sent on it.
func pgRetryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01":
			return true
		case "23505":
			return strings.HasPrefix(pe.ConstraintName, "records_live_")
		}
		return false
	}
	return pgconn.SafeToRetry(err)
}

func (b *pgBackend) classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "53300":
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case pe.Code == "23505" && strings.HasPrefix(pe.ConstraintName, "records_live_"):
			return fmt.Errorf("%w: %w", ErrLiveRecord, err)
		}
		return err
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) || strings.Contains(err.Error(), "conn closed") {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// pgExecer runs statements on a pool or a transaction.
type pgExecer struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (e pgExecer) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := e.q.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (e pgExecer) query(ctx context.Context, q string, args ...any) (rows, error) {
	return e.q.Query(ctx, q, args...)
}

func (e pgExecer) queryRow(ctx context.Context, q string, args ...any) row {
	return pgRow{e.q.QueryRow(ctx, q, args...)}
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}

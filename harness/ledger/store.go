package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The logic of every Store method lives here once, written in the SQL both drivers accept
// ($1 placeholders, ON CONFLICT, RETURNING); a backend supplies connections, transactions, the
// few dialect differences and the classification of its errors.

// execer runs statements, on a pool or inside a transaction.
type execer interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type row interface {
	// Scan returns errNoRows when the query selected nothing.
	Scan(dest ...any) error
}

var errNoRows = errors.New("no rows")

// backend is one driver.
type backend interface {
	// name is "sqlite" or "postgres" (the key of the per-driver SQL).
	name() string
	// forUpdate is appended to a SELECT that must lock the rows it reads until the transaction ends.
	forUpdate() string
	// timeArg encodes a time for a statement (nil for the zero time).
	timeArg(t time.Time) any
	// read runs single statements outside a transaction.
	read() execer
	// tx runs fn in a transaction and commits it; a write transaction takes the write lock
	// (SQLite) or may be retried whole after a serialization failure or a race on a unique
	// index (PostgreSQL), so fn must not keep state across calls.
	tx(ctx context.Context, write bool, fn func(execer) error) error
	// classify maps a driver error to the package's sentinels where one applies (ErrCorrupt,
	// ErrUnavailable, ErrLiveRecord for a unique index on live records).
	classify(err error) error
	describe() string
	close() error
}

// core implements Store on a backend.
type core struct {
	b   backend
	now func() time.Time
}

func newCore(b backend) *core { return &core{b: b, now: time.Now} }

// stamp is the current time as stored: UTC, microseconds.
func (c *core) stamp() time.Time { return c.now().UTC().Truncate(time.Microsecond) }

func (c *core) t(t time.Time) any { return c.b.timeArg(t) }

// fail wraps an error for the caller: the store's name, the operation, and the cause classified.
func (c *core) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("ledger %s: %s: %w", c.b.describe(), op, c.b.classify(err))
}

// Describe names the store: its file, or postgres://user@host:port/db.
func (c *core) Describe() string { return c.b.describe() }

// Close releases the store's connections.
func (c *core) Close() error { return c.b.close() }

const recordColumns = `id, device_key, device_id, target, station, run_id, dak_sha256, csr_sha256, holder, state,
	signatures, serial, cert_sha256, subject, not_before, not_after, chain_pem,
	reserved_at, issued_at, stored_at, verified_at, replaced_at, replaced_by`

func scanRecord(r interface{ Scan(...any) error }) (*Record, error) {
	var rec Record
	var state string
	var notBefore, notAfter, reserved, issued, stored, verified, replaced nullTime
	var replacedBy sql.NullInt64
	err := r.Scan(&rec.ID, &rec.DeviceKey, &rec.DeviceID, &rec.Target, &rec.Station, &rec.RunID,
		&rec.DAKSHA256, &rec.CSRSHA256, &rec.Holder, &state, &rec.Signatures, &rec.Serial, &rec.CertSHA256,
		&rec.Subject, &notBefore, &notAfter, &rec.ChainPEM, &reserved, &issued, &stored, &verified,
		&replaced, &replacedBy)
	if err != nil {
		return nil, err
	}
	rec.State = State(state)
	rec.NotBefore, rec.NotAfter = notBefore.t, notAfter.t
	rec.ReservedAt, rec.IssuedAt, rec.StoredAt, rec.VerifiedAt, rec.ReplacedAt = reserved.t, issued.t, stored.t, verified.t, replaced.t
	rec.ReplacedBy = replacedBy.Int64
	return &rec, nil
}

// nullTime scans a timestamp from either driver: time.Time (PostgreSQL), RFC 3339 text
// (SQLite), or NULL (the zero time).
type nullTime struct{ t time.Time }

func (n *nullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		n.t = time.Time{}
	case time.Time:
		n.t = v.UTC()
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	default:
		return fmt.Errorf("timestamp: unexpected %T", v)
	}
	return nil
}

func (n *nullTime) parse(s string) error {
	if s == "" {
		n.t = time.Time{}
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", s, err)
	}
	n.t = t.UTC()
	return nil
}

// sqliteTimeFormat is RFC 3339 in UTC with exactly six fractional digits: readable in the
// sqlite3 CLI and ordered the same as text and as time.
const sqliteTimeFormat = "2006-01-02T15:04:05.000000Z"

func (c *core) getTx(ctx context.Context, x execer, id int64) (*Record, error) {
	rec, err := scanRecord(x.queryRow(ctx, `SELECT `+recordColumns+` FROM records WHERE id = $1`, id))
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%w: record %d", ErrNotFound, id)
	}
	return rec, err
}

// short abbreviates a hex digest for messages.
func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

func describeRecord(r *Record) string {
	s := fmt.Sprintf("record %d (%s, device key %s", r.ID, r.State, short(r.DeviceKey))
	if r.DeviceID != "" {
		s += fmt.Sprintf(", device id %q", r.DeviceID)
	}
	if r.Target != "" {
		s += ", target " + r.Target
	}
	return s + ")"
}

// Reserve records a reservation and counts one signature against the DAK's budget, in one
// transaction. See Store.Reserve.
//
// The DAK's row is locked first (by the upsert that counts the signature), so reservations
// against one DAK run one after the other even on PostgreSQL; the live-record checks run after
// the lock and see every reservation committed before. A live reserved record of the same device
// key is reused (its Signatures and the budget go up by one; its CSR, run, station and target
// become the new reservation's) only when it was made with the same DAK and does not name
// another device id; otherwise it fails with ErrLiveRecord like any live record in a later state.
// Records in Replaces that are already replaced are left as they are; an unknown id fails with
// ErrNotFound.
func (c *core) Reserve(ctx context.Context, r Reservation) (*Record, Budget, error) {
	return c.reserve(ctx, r, nil)
}

// ReserveIssued is Reserve and Issue in one transaction, for a signature made in this process
// before the ledger was asked (see Store.ReserveIssued).
func (c *core) ReserveIssued(ctx context.Context, r Reservation, cert Certificate) (*Record, Budget, error) {
	if cert.CertSHA256 == "" || cert.ChainPEM == "" {
		return nil, Budget{}, c.fail("reserve issued for device key "+short(r.DeviceKey), errors.New("a certificate needs its fingerprint and chain"))
	}
	return c.reserve(ctx, r, &cert)
}

// reserve is Reserve; with cert the record is issued with it in the same transaction.
func (c *core) reserve(ctx context.Context, r Reservation, cert *Certificate) (*Record, Budget, error) {
	var rec *Record
	var bud Budget
	if r.DeviceKey == "" || r.DAKSHA256 == "" {
		return nil, bud, c.fail("reserve", errors.New("a reservation needs a device key and a DAK"))
	}
	err := c.b.tx(ctx, true, func(x execer) error {
		rec, bud = nil, Budget{}
		now := c.stamp()
		// Count the signature on the DAK's row, creating the row if new: one statement that
		// also locks the row (an upsert whose WHERE refuses still locks the row it meets, like
		// SELECT ... FOR UPDATE). No row back: the budget is used up; a refused live record
		// still says so first, below, and nothing is written.
		counted := true
		err := x.queryRow(ctx, `INSERT INTO daks (dak_sha256, used, max_signatures, unrecorded, updated_at)
			VALUES ($1, 1, $2, 0, $3) ON CONFLICT (dak_sha256) DO UPDATE SET used = daks.used + 1,
			max_signatures = excluded.max_signatures, updated_at = excluded.updated_at
			WHERE excluded.max_signatures <= 0 OR daks.used < excluded.max_signatures RETURNING used, max_signatures`,
			r.DAKSHA256, r.MaxSignatures, c.t(now)).Scan(&bud.Used, &bud.Max)
		if errors.Is(err, errNoRows) {
			counted = false
		} else if err != nil {
			return err
		}
		bud.DAKSHA256 = r.DAKSHA256

		live, err := c.listTx(ctx, x, c.liveWhere(r)+` ORDER BY id`+c.b.forUpdate(), c.liveArgs(r)...)
		if err != nil {
			return err
		}
		var reuse *Record
		for i := range live {
			l := &live[i]
			if slices.Contains(r.Replaces, l.ID) {
				continue
			}
			sameKey := reuse == nil && l.DeviceKey == r.DeviceKey && l.State == Reserved && l.DAKSHA256 == r.DAKSHA256 &&
				(l.DeviceID == "" || r.DeviceID == "" || l.DeviceID == r.DeviceID)
			if sameKey && (l.Holder == r.Holder || (r.TakeOver && l.Holder == r.TakeOverFrom)) {
				reuse = l
				continue
			}
			why := "the device key"
			switch {
			case l.DeviceKey != r.DeviceKey:
				why = fmt.Sprintf("device id %q", r.DeviceID)
			case sameKey:
				why = fmt.Sprintf("the device key, reserved by %s at %s and not released (in flight there, or taken over since)",
					l.Holder, l.ReservedAt.Format(time.RFC3339))
			case l.State == Reserved && l.DAKSHA256 != r.DAKSHA256:
				why = "the device key, reserved with another DAK (" + short(l.DAKSHA256) + ")"
			}
			return fmt.Errorf("%w: %s holds %s; replace it to reprovision", ErrLiveRecord, describeRecord(l), why)
		}

		if !counted {
			var used int64
			if err := x.queryRow(ctx, `SELECT used FROM daks WHERE dak_sha256 = $1`, r.DAKSHA256).Scan(&used); err != nil {
				return err
			}
			bud = Budget{DAKSHA256: r.DAKSHA256, Used: used, Max: r.MaxSignatures}
			return fmt.Errorf("%w: DAK %s has made %d of %d signatures", ErrBudgetExhausted, short(r.DAKSHA256), used, r.MaxSignatures)
		}

		var replaced []int64
		for _, id := range r.Replaces {
			n, err := x.exec(ctx, `UPDATE records SET state = 'replaced', replaced_at = $2 WHERE id = $1 AND state IN `+liveStatesSQL,
				id, c.t(now))
			if err != nil {
				return err
			}
			if n > 0 {
				replaced = append(replaced, id)
			} else if _, err := c.getTx(ctx, x, id); err != nil {
				return fmt.Errorf("replacing: %w", err)
			}
		}

		var id int64
		switch {
		case reuse != nil:
			id = reuse.ID
			if _, err := x.exec(ctx, `UPDATE records SET signatures = signatures + 1, csr_sha256 = $2, run_id = $3,
				station = $4, target = $5, device_id = CASE WHEN $6 <> '' THEN $6 ELSE device_id END, holder = $7 WHERE id = $1`,
				id, r.CSRSHA256, r.RunID, r.Station, r.Target, r.DeviceID, r.Holder); err != nil {
				return err
			}
			if cert != nil {
				if _, err := x.exec(ctx, `UPDATE records SET state = 'issued', serial = $2, cert_sha256 = $3, subject = $4,
					not_before = $5, not_after = $6, chain_pem = $7, issued_at = $8 WHERE id = $1`,
					id, cert.Serial, cert.CertSHA256, cert.Subject, c.t(cert.NotBefore), c.t(cert.NotAfter), cert.ChainPEM, c.t(now)); err != nil {
					return err
				}
			}
		case cert != nil:
			// A new record, issued at once: one row written with its index entries, not a
			// reservation rewritten a moment later.
			if err := x.queryRow(ctx, `INSERT INTO records (device_key, device_id, target, station, run_id, dak_sha256,
				csr_sha256, holder, state, signatures, serial, cert_sha256, subject, not_before, not_after, chain_pem,
				reserved_at, issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'issued', 1, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING id`,
				r.DeviceKey, r.DeviceID, r.Target, r.Station, r.RunID, r.DAKSHA256, r.CSRSHA256, r.Holder,
				cert.Serial, cert.CertSHA256, cert.Subject, c.t(cert.NotBefore), c.t(cert.NotAfter), cert.ChainPEM, c.t(now)).Scan(&id); err != nil {
				return err
			}
		default:
			if err := x.queryRow(ctx, `INSERT INTO records (device_key, device_id, target, station, run_id, dak_sha256,
				csr_sha256, holder, state, signatures, reserved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $9, 'reserved', 1, $8) RETURNING id`,
				r.DeviceKey, r.DeviceID, r.Target, r.Station, r.RunID, r.DAKSHA256, r.CSRSHA256, c.t(now), r.Holder).Scan(&id); err != nil {
				return err
			}
		}
		for _, old := range replaced {
			if _, err := x.exec(ctx, `UPDATE records SET replaced_by = $2 WHERE id = $1`, old, id); err != nil {
				return err
			}
		}
		if reuse != nil {
			rec, err = c.getTx(ctx, x, id)
			return err
		}
		// A new record is what was just written: no need to read it back.
		rec = newRecord(id, r, cert, now)
		return nil
	})
	if err != nil {
		return nil, bud, c.fail("reserve for device key "+short(r.DeviceKey), err)
	}
	return rec, bud, nil
}

// liveWhere selects the live records a reservation meets: its device key's, and its device
// id's when it has one (a separate condition, not an OR with an empty id that the query would
// still have to plan for).
func (c *core) liveWhere(r Reservation) string {
	if r.DeviceID == "" {
		return `state IN ` + liveStatesSQL + ` AND device_key = $1`
	}
	return `state IN ` + liveStatesSQL + ` AND (device_key = $1 OR device_id = $2)`
}

func (c *core) liveArgs(r Reservation) []any {
	if r.DeviceID == "" {
		return []any{r.DeviceKey}
	}
	return []any{r.DeviceKey, r.DeviceID}
}

// newRecord is the record reserve inserts, as the store would read it back (times as stored:
// UTC, microseconds).
func newRecord(id int64, r Reservation, cert *Certificate, now time.Time) *Record {
	rec := &Record{ID: id, DeviceKey: r.DeviceKey, DeviceID: r.DeviceID, Target: r.Target, Station: r.Station, RunID: r.RunID,
		DAKSHA256: r.DAKSHA256, CSRSHA256: r.CSRSHA256, Holder: r.Holder, State: Reserved, Signatures: 1, ReservedAt: now}
	if cert != nil {
		rec.State, rec.IssuedAt = Issued, now
		rec.Serial, rec.CertSHA256, rec.Subject, rec.ChainPEM = cert.Serial, cert.CertSHA256, cert.Subject, cert.ChainPEM
		rec.NotBefore, rec.NotAfter = storedTime(cert.NotBefore), storedTime(cert.NotAfter)
	}
	return rec
}

// storedTime is t as a store reads it back: UTC, microseconds; the zero time stays zero.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Issue moves a reserved record to issued with its certificate (ErrState from any other state;
// the certificate needs its fingerprint and chain).
func (c *core) Issue(ctx context.Context, id int64, cert Certificate) error {
	if cert.CertSHA256 == "" || cert.ChainPEM == "" {
		return c.fail(fmt.Sprintf("issue record %d", id), errors.New("a certificate needs its fingerprint and chain"))
	}
	err := c.b.tx(ctx, true, func(x execer) error {
		n, err := x.exec(ctx, `UPDATE records SET state = 'issued', serial = $2, cert_sha256 = $3, subject = $4,
			not_before = $5, not_after = $6, chain_pem = $7, issued_at = $8 WHERE id = $1 AND state = 'reserved'`,
			id, cert.Serial, cert.CertSHA256, cert.Subject, c.t(cert.NotBefore), c.t(cert.NotAfter), cert.ChainPEM, c.t(c.stamp()))
		if err != nil || n > 0 {
			return err
		}
		rec, err := c.getTx(ctx, x, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s; only a reserved record is issued", ErrState, describeRecord(rec))
	})
	return c.fail(fmt.Sprintf("issue record %d", id), err)
}

// Advance moves a record forward to stored or verified. A record already in the state or past it
// is left alone (nil); a replaced record, and a reserved one (Issue it first: a record past
// reserved always has its chain), fail with ErrState, and so does a target state other than
// issued, stored or verified.
func (c *core) Advance(ctx context.Context, id int64, to State) error {
	op := fmt.Sprintf("advance record %d to %s", id, to)
	var from []string
	var stampCol string
	switch to {
	case Issued:
	case Stored:
		from, stampCol = []string{"'issued'"}, "stored_at"
	case Verified:
		from, stampCol = []string{"'issued'", "'stored'"}, "verified_at"
	default:
		return c.fail(op, fmt.Errorf("%w: a record is advanced to stored or verified, not %q", ErrState, to))
	}
	err := c.b.tx(ctx, true, func(x execer) error {
		if len(from) > 0 {
			n, err := x.exec(ctx, `UPDATE records SET state = $2, `+stampCol+` = $3 WHERE id = $1 AND state IN (`+
				strings.Join(from, ", ")+`)`, id, string(to), c.t(c.stamp()))
			if err != nil || n > 0 {
				return err
			}
		}
		rec, err := c.getTx(ctx, x, id)
		if err != nil {
			return err
		}
		switch {
		case rec.State == Replaced:
			return fmt.Errorf("%w: %s was replaced by record %d", ErrState, describeRecord(rec), rec.ReplacedBy)
		case rec.State == Reserved:
			return fmt.Errorf("%w: %s has no certificate yet (Issue it first)", ErrState, describeRecord(rec))
		case rec.State.rank() < to.rank():
			return fmt.Errorf("%w: %s cannot move to %s", ErrState, describeRecord(rec), to)
		}
		return nil // already there or past it
	})
	return c.fail(op, err)
}

// Get returns one record (ErrNotFound).
func (c *core) Get(ctx context.Context, id int64) (*Record, error) {
	rec, err := c.getTx(ctx, c.b.read(), id)
	if err != nil {
		return nil, c.fail(fmt.Sprintf("get record %d", id), err)
	}
	return rec, nil
}

// Live returns the live record of a device key (ErrNotFound when none). In a ledger edited by
// hand that holds two, the newest.
func (c *core) Live(ctx context.Context, deviceKey string) (*Record, error) {
	recs, err := c.listTx(ctx, c.b.read(), `device_key = $1 AND state IN `+liveStatesSQL+` ORDER BY id DESC LIMIT 1`, deviceKey)
	op := "live record of device key " + short(deviceKey)
	if err != nil {
		return nil, c.fail(op, err)
	}
	if len(recs) == 0 {
		return nil, c.fail(op, ErrNotFound)
	}
	return &recs[0], nil
}

// List returns the records the filter selects, oldest reservation first.
func (c *core) List(ctx context.Context, f Filter) ([]Record, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.DeviceKey != "" {
		add("device_key = $%d", f.DeviceKey)
	}
	if f.DeviceID != "" {
		add("device_id = $%d", f.DeviceID)
	}
	if f.Target != "" {
		add("target = $%d", f.Target)
	}
	if f.State != "" {
		add("state = $%d", string(f.State))
	}
	if f.LiveOnly {
		where = append(where, "state IN "+liveStatesSQL)
	}
	if len(where) == 0 {
		where = append(where, "1 = 1")
	}
	recs, err := c.listTx(ctx, c.b.read(), strings.Join(where, " AND ")+" ORDER BY reserved_at, id", args...)
	if err != nil {
		return nil, c.fail("list", err)
	}
	return recs, nil
}

func (c *core) listTx(ctx context.Context, x execer, where string, args ...any) ([]Record, error) {
	rs, err := x.query(ctx, `SELECT `+recordColumns+` FROM records WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []Record
	for rs.Next() {
		rec, err := scanRecord(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, *rec)
	}
	return out, rs.Err()
}

// Budget returns a DAK's count (zero when the ledger never saw the DAK).
func (c *core) Budget(ctx context.Context, dakSHA256 string) (Budget, error) {
	b := Budget{DAKSHA256: dakSHA256}
	err := c.b.read().queryRow(ctx, `SELECT used, max_signatures FROM daks WHERE dak_sha256 = $1`, dakSHA256).Scan(&b.Used, &b.Max)
	if err != nil && !errors.Is(err, errNoRows) {
		return b, c.fail("budget of DAK "+short(dakSHA256), err)
	}
	return b, nil
}

// Import writes a record as given, with a new ID, counting its Signatures against its DAK's
// budget (whatever the DAK's maximum: the signatures were made). A record whose fingerprint the
// ledger holds already is skipped. ReplacedBy is not carried over (the IDs it names are another
// ledger's). A live record that collides with a live record of the same device key or device id
// fails with ErrLiveRecord. A zero ReservedAt takes the earliest time the record has, or now.
func (c *core) Import(ctx context.Context, r Record) (bool, error) {
	op := "import record of device key " + short(r.DeviceKey)
	if r.DeviceKey == "" || r.DAKSHA256 == "" {
		return false, c.fail(op, errors.New("a record needs a device key and a DAK"))
	}
	if r.State.rank() == 0 {
		return false, c.fail(op, fmt.Errorf("unknown state %q", r.State))
	}
	if r.Signatures < 0 {
		return false, c.fail(op, fmt.Errorf("negative signature count %d", r.Signatures))
	}
	if r.State != Reserved && r.State != Replaced && r.ChainPEM == "" {
		return false, c.fail(op, fmt.Errorf("a record in state %s needs its chain", r.State))
	}
	if r.ReservedAt.IsZero() {
		r.ReservedAt = c.stamp()
		for _, t := range []time.Time{r.IssuedAt, r.StoredAt, r.VerifiedAt, r.ReplacedAt} {
			if !t.IsZero() && t.Before(r.ReservedAt) {
				r.ReservedAt = t
			}
		}
	}
	imported := false
	err := c.b.tx(ctx, true, func(x execer) error {
		imported = false
		if r.CertSHA256 != "" {
			var one int
			// The <> '' lets SQLite use the partial index records_cert: without it, it scans
			// the table for every record imported.
			err := x.queryRow(ctx, `SELECT 1 FROM records WHERE cert_sha256 = $1 AND cert_sha256 <> ''`, r.CertSHA256).Scan(&one)
			if err == nil {
				return nil
			} else if !errors.Is(err, errNoRows) {
				return err
			}
		}
		now := c.t(c.stamp())
		if _, err := x.exec(ctx, `INSERT INTO daks (dak_sha256, used, max_signatures, unrecorded, updated_at)
			VALUES ($1, 0, 0, 0, $2) ON CONFLICT (dak_sha256) DO NOTHING`, r.DAKSHA256, now); err != nil {
			return err
		}
		if _, err := x.exec(ctx, `UPDATE daks SET used = used + $2, updated_at = $3 WHERE dak_sha256 = $1`,
			r.DAKSHA256, int64(r.Signatures), now); err != nil {
			return err
		}
		if _, err := x.exec(ctx, `INSERT INTO records (device_key, device_id, target, station, run_id, dak_sha256,
			csr_sha256, state, signatures, serial, cert_sha256, subject, not_before, not_after, chain_pem,
			reserved_at, issued_at, stored_at, verified_at, replaced_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`,
			r.DeviceKey, r.DeviceID, r.Target, r.Station, r.RunID, r.DAKSHA256, r.CSRSHA256, string(r.State),
			int64(r.Signatures), r.Serial, r.CertSHA256, r.Subject, c.t(r.NotBefore), c.t(r.NotAfter), r.ChainPEM,
			c.t(r.ReservedAt), c.t(r.IssuedAt), c.t(r.StoredAt), c.t(r.VerifiedAt), c.t(r.ReplacedAt)); err != nil {
			return err
		}
		imported = true
		return nil
	})
	if err != nil {
		return false, c.fail(op, err)
	}
	return imported, nil
}

// SetBudgetFloor raises a DAK's used count to at least used; the signatures it adds are counted
// as made without a record, so Check still balances.
func (c *core) SetBudgetFloor(ctx context.Context, dakSHA256 string, used int64) error {
	op := "set the budget floor of DAK " + short(dakSHA256)
	if dakSHA256 == "" || used < 0 {
		return c.fail(op, fmt.Errorf("want a DAK and a count >= 0, got %q and %d", dakSHA256, used))
	}
	err := c.b.tx(ctx, true, func(x execer) error {
		_, err := x.exec(ctx, `INSERT INTO daks (dak_sha256, used, max_signatures, unrecorded, updated_at) VALUES ($1, $2, 0, $2, $3)
			ON CONFLICT (dak_sha256) DO UPDATE SET unrecorded = daks.unrecorded + (excluded.used - daks.used),
			used = excluded.used, updated_at = excluded.updated_at WHERE daks.used < excluded.used`,
			dakSHA256, used, c.t(c.stamp()))
		return err
	})
	return c.fail(op, err)
}

// Problem kinds Check reports.
const (
	ProblemBudgetMismatch = "budget_mismatch"  // a DAK's used count is not the signatures its records count (plus those made without a record)
	ProblemMissingChain   = "missing_chain"    // a record past reserved has no chain
	ProblemTwoLive        = "two_live_records" // a device key or device id has more than one live record
	ProblemBadState       = "bad_state"        // a record's state is not one of the States
)

// Check proves the ledger consistent; see Store.Check. It reads everything in one transaction,
// and relies on no index or constraint, so it finds what a hand edit left behind.
func (c *core) Check(ctx context.Context) ([]Problem, error) {
	var problems []Problem
	err := c.b.tx(ctx, false, func(x execer) error {
		problems = nil
		type count struct{ used, unrecorded, sigs int64 }
		daks := map[string]*count{}
		var order []string
		get := func(d string) *count {
			if daks[d] == nil {
				daks[d] = &count{}
				order = append(order, d)
			}
			return daks[d]
		}
		if err := each(ctx, x, `SELECT dak_sha256, used, unrecorded FROM daks ORDER BY dak_sha256`, func(r rows) error {
			var d string
			var used, unrecorded int64
			if err := r.Scan(&d, &used, &unrecorded); err != nil {
				return err
			}
			n := get(d)
			n.used, n.unrecorded = used, unrecorded
			return nil
		}); err != nil {
			return err
		}
		if err := each(ctx, x, `SELECT dak_sha256, CAST(SUM(signatures) AS BIGINT) FROM records GROUP BY dak_sha256 ORDER BY dak_sha256`, func(r rows) error {
			var d string
			var sigs int64
			if err := r.Scan(&d, &sigs); err != nil {
				return err
			}
			get(d).sigs = sigs
			return nil
		}); err != nil {
			return err
		}
		slices.Sort(order)
		for _, d := range order {
			n := daks[d]
			if n.used != n.sigs+n.unrecorded {
				problems = append(problems, Problem{Kind: ProblemBudgetMismatch, Detail: fmt.Sprintf(
					"DAK %s: used %d, but its records count %d signatures and %d were made without a record", d, n.used, n.sigs, n.unrecorded)})
			}
		}

		if err := each(ctx, x, `SELECT id, state FROM records WHERE chain_pem = '' AND
			(state IN ('issued', 'stored', 'verified') OR (state = 'replaced' AND issued_at IS NOT NULL)) ORDER BY id`, func(r rows) error {
			var id int64
			var state string
			if err := r.Scan(&id, &state); err != nil {
				return err
			}
			problems = append(problems, Problem{Kind: ProblemMissingChain, RecordID: id,
				Detail: fmt.Sprintf("record %d is %s but holds no certificate chain", id, state)})
			return nil
		}); err != nil {
			return err
		}

		if err := each(ctx, x, `SELECT id, state FROM records WHERE state NOT IN ('reserved', 'issued', 'stored', 'verified', 'replaced') ORDER BY id`, func(r rows) error {
			var id int64
			var state string
			if err := r.Scan(&id, &state); err != nil {
				return err
			}
			problems = append(problems, Problem{Kind: ProblemBadState, RecordID: id, Detail: fmt.Sprintf("record %d has unknown state %q", id, state)})
			return nil
		}); err != nil {
			return err
		}

		for _, col := range []string{"device_key", "device_id"} {
			what := strings.ReplaceAll(col, "_", " ")
			seen := map[string][]int64{}
			var keys []string
			if err := each(ctx, x, `SELECT `+col+`, id FROM records WHERE `+col+` <> '' AND state IN `+liveStatesSQL+` ORDER BY id`, func(r rows) error {
				var k string
				var id int64
				if err := r.Scan(&k, &id); err != nil {
					return err
				}
				if seen[k] == nil {
					keys = append(keys, k)
				}
				seen[k] = append(seen[k], id)
				return nil
			}); err != nil {
				return err
			}
			for _, k := range keys {
				ids := seen[k]
				if len(ids) < 2 {
					continue
				}
				for _, id := range ids[1:] {
					problems = append(problems, Problem{Kind: ProblemTwoLive, RecordID: id, Detail: fmt.Sprintf(
						"%s %s has %d live records (%s); record %d is not the first", what, k, len(ids), joinIDs(ids), id)})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, c.fail("check", err)
	}
	return problems, nil
}

func each(ctx context.Context, x execer, q string, fn func(rows) error) error {
	rs, err := x.query(ctx, q)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := fn(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ", ")
}

// migrate brings a database to SchemaVersion inside the caller's transaction. tables are the
// tables the database holds; strict says any other table makes it not a ledger (a SQLite file is
// a ledger or not; a PostgreSQL database may hold other applications' tables too). Its errors
// come before its first write.
func migrate(ctx context.Context, x execer, driver string, tables []string, strict bool, now any) error {
	has := func(t string) bool { return slices.Contains(tables, t) }
	version := 0
	switch {
	case has("ledger_migrations"):
		var v sql.NullInt64
		if err := x.queryRow(ctx, `SELECT MAX(version) FROM ledger_migrations`).Scan(&v); err != nil {
			return err
		}
		version = int(v.Int64)
		if version > SchemaVersion {
			return fmt.Errorf("%w: schema version %d, this hilbench knows up to %d; nothing was changed",
				ErrSchemaTooNew, version, SchemaVersion)
		}
		if version > 0 && (!has("daks") || !has("records")) {
			return fmt.Errorf("%w: schema version %d but no daks or records table", ErrCorrupt, version)
		}
		if version > 1 && (!has("setup_pins") || !has("test_runs")) {
			return fmt.Errorf("%w: schema version %d but no setup_pins or test_runs table", ErrCorrupt, version)
		}
	case has("daks") || has("records") || has("setup_pins") || has("test_runs"):
		return fmt.Errorf("%w: ledger tables but no ledger_migrations: not a ledger hilbench made", ErrCorrupt)
	}
	if strict {
		var other []string
		for _, t := range tables {
			if !slices.Contains(ledgerTables, t) {
				other = append(other, t)
			}
		}
		if len(other) > 0 {
			return fmt.Errorf("%w: a SQLite database but not a ledger (it holds tables %s)", ErrCorrupt, strings.Join(other, ", "))
		}
	}
	if version == 0 && !has("ledger_migrations") {
		if _, err := x.exec(ctx, migrationsTableSQL[driver]); err != nil {
			return err
		}
	}
	for _, m := range migrations {
		if m.version <= version {
			continue
		}
		stmts := m.sqlite
		if driver == "postgres" {
			stmts = m.postgres
		}
		for _, s := range stmts {
			if _, err := x.exec(ctx, s); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.description, err)
			}
		}
		if _, err := x.exec(ctx, `INSERT INTO ledger_migrations (version, description, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.description, now); err != nil {
			return err
		}
	}
	return nil
}

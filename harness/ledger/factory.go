package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// What the factory outputs and the station keep beside the identity records: the setup PIN of
// each device key and the station's test runs.

var (
	// ErrExists: a test run with that id is already recorded.
	ErrExists = errors.New("already recorded in the ledger")
	// ErrNotRunning: the test run has already ended with another outcome.
	ErrNotRunning = errors.New("test run is not running")
)

// TestOutcome is a test run's result; RUNNING until it ends.
type TestOutcome string

const (
	TestRunning TestOutcome = "RUNNING"
	TestPass    TestOutcome = "PASS"
	TestFail    TestOutcome = "FAIL"
	TestError   TestOutcome = "ERROR"
	TestAborted TestOutcome = "ABORTED"
)

// Ended reports whether o is a final outcome.
func (o TestOutcome) Ended() bool {
	switch o {
	case TestPass, TestFail, TestError, TestAborted:
		return true
	}
	return false
}

// TestRun is one DUT's test at a station: who, where, when, how it ended, and the whole test
// record as the station wrote it (JSON).
type TestRun struct {
	ID        string // unique, chosen by the station
	DUTID     string // the device's serial or DSN
	Station   string
	Slot      string
	Operator  string
	RunID     string
	Outcome   TestOutcome
	StartedAt time.Time
	EndedAt   time.Time // zero while RUNNING
	Record    []byte    // the test record as JSON; may be empty while RUNNING
}

// TestFilter selects test runs; empty fields select all. Limit 0 means no limit.
type TestFilter struct {
	Station, Slot, DUTID string
	Outcome              TestOutcome
	Limit                int
}

// SetupPIN returns the setup PIN recorded for deviceKey. When there is none it calls gen once,
// records the result and returns it; a concurrent caller that recorded first wins and both get
// its PIN. The PIN never appears in an error.
func (c *core) SetupPIN(ctx context.Context, deviceKey string, gen func() (string, error)) (string, error) {
	if deviceKey == "" {
		return "", c.fail("setup PIN", errors.New("no device key"))
	}
	var pin string
	err := c.b.read().queryRow(ctx, `SELECT pin FROM setup_pins WHERE device_key = $1`, deviceKey).Scan(&pin)
	if err == nil {
		return pin, nil
	}
	if !errors.Is(err, errNoRows) {
		return "", c.fail("setup PIN", err)
	}
	fresh, err := gen()
	if err != nil {
		return "", fmt.Errorf("setup PIN for device key %s: %w", short(deviceKey), err)
	}
	if fresh == "" {
		return "", c.fail("setup PIN", errors.New("the generator made an empty PIN"))
	}
	err = c.b.tx(ctx, true, func(x execer) error {
		if _, err := x.exec(ctx, `INSERT INTO setup_pins (device_key, pin, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (device_key) DO NOTHING`, deviceKey, fresh, c.t(c.stamp())); err != nil {
			return err
		}
		return x.queryRow(ctx, `SELECT pin FROM setup_pins WHERE device_key = $1`, deviceKey).Scan(&pin)
	})
	if err != nil {
		return "", c.fail("setup PIN", err)
	}
	return pin, nil
}

const testRunColumns = `id, dut_id, station, slot, operator, run_id, outcome, started_at, ended_at, record`

func scanTestRun(r interface{ Scan(...any) error }) (*TestRun, error) {
	var t TestRun
	var outcome, record string
	var started, ended nullTime
	if err := r.Scan(&t.ID, &t.DUTID, &t.Station, &t.Slot, &t.Operator, &t.RunID, &outcome, &started, &ended, &record); err != nil {
		return nil, err
	}
	t.Outcome = TestOutcome(outcome)
	t.StartedAt, t.EndedAt = started.t, ended.t
	if record != "" {
		t.Record = []byte(record)
	}
	return &t, nil
}

// BeginTest records a test run as RUNNING, before its first phase: a station that dies leaves it
// RUNNING for the next start to end. An id already recorded fails with ErrExists.
func (c *core) BeginTest(ctx context.Context, t TestRun) error {
	if t.ID == "" {
		return c.fail("begin test", errors.New("a test run needs an id"))
	}
	if t.StartedAt.IsZero() {
		t.StartedAt = c.stamp()
	}
	var n int64
	err := c.b.tx(ctx, true, func(x execer) error {
		var err error
		n, err = x.exec(ctx, `INSERT INTO test_runs (`+testRunColumns+`) VALUES ($1, $2, $3, $4, $5, $6, 'RUNNING', $7, NULL, $8)
			ON CONFLICT (id) DO NOTHING`,
			t.ID, t.DUTID, t.Station, t.Slot, t.Operator, t.RunID, c.t(t.StartedAt.UTC().Truncate(time.Microsecond)), string(t.Record))
		return err
	})
	if err != nil {
		return c.fail("begin test", err)
	}
	if n == 0 {
		return c.fail("begin test", fmt.Errorf("%w: test run %q", ErrExists, t.ID))
	}
	return nil
}

// EndTest moves a RUNNING test run to its outcome with its final record. Ending it again with
// the same outcome is no error (a station repeating its last step after a crash); another
// outcome fails with ErrNotRunning.
func (c *core) EndTest(ctx context.Context, id string, outcome TestOutcome, ended time.Time, record []byte) error {
	if !outcome.Ended() {
		return c.fail("end test", fmt.Errorf("%q is not a final outcome", outcome))
	}
	if ended.IsZero() {
		ended = c.stamp()
	}
	err := c.b.tx(ctx, true, func(x execer) error {
		t, err := scanTestRun(x.queryRow(ctx, `SELECT `+testRunColumns+` FROM test_runs WHERE id = $1`+c.b.forUpdate(), id))
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("%w: test run %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		switch t.Outcome {
		case outcome:
			return nil
		case TestRunning:
		default:
			return fmt.Errorf("%w: test run %q ended %s", ErrNotRunning, id, t.Outcome)
		}
		_, err = x.exec(ctx, `UPDATE test_runs SET outcome = $1, ended_at = $2, record = $3 WHERE id = $4`,
			string(outcome), c.t(ended.UTC().Truncate(time.Microsecond)), string(record), id)
		return err
	})
	return c.fail("end test", err)
}

// GetTest returns one test run (ErrNotFound).
func (c *core) GetTest(ctx context.Context, id string) (*TestRun, error) {
	t, err := scanTestRun(c.b.read().queryRow(ctx, `SELECT `+testRunColumns+` FROM test_runs WHERE id = $1`, id))
	if errors.Is(err, errNoRows) {
		return nil, c.fail("get test", fmt.Errorf("%w: test run %q", ErrNotFound, id))
	}
	if err != nil {
		return nil, c.fail("get test", err)
	}
	return t, nil
}

// ListTests returns the test runs the filter selects, newest first.
func (c *core) ListTests(ctx context.Context, f TestFilter) ([]TestRun, error) {
	var where []string
	var args []any
	add := func(col, v string) {
		if v != "" {
			args = append(args, v)
			where = append(where, fmt.Sprintf("%s = $%d", col, len(args)))
		}
	}
	add("station", f.Station)
	add("slot", f.Slot)
	add("dut_id", f.DUTID)
	add("outcome", string(f.Outcome))
	q := `SELECT ` + testRunColumns + ` FROM test_runs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY started_at DESC, id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rs, err := c.b.read().query(ctx, q, args...)
	if err != nil {
		return nil, c.fail("list tests", err)
	}
	defer rs.Close()
	var out []TestRun
	for rs.Next() {
		t, err := scanTestRun(rs)
		if err != nil {
			return nil, c.fail("list tests", err)
		}
		out = append(out, *t)
	}
	return out, c.fail("list tests", rs.Err())
}

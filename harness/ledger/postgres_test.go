package ledger

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"hilbench/harness/bench"
	"hilbench/harness/ledger/pgtest"
)

func pgConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

func postgresFixture(t *testing.T) *fixture {
	dsn := pgtest.Start(t)
	return &fixture{
		driver: "postgres",
		loc:    dsn,
		raw: func(t *testing.T, q string) {
			t.Helper()
			if _, err := pgConn(t, dsn).Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
		scalar: func(t *testing.T, q string) int64 {
			t.Helper()
			var n int64
			if err := pgConn(t, dsn).QueryRow(ctx, q).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return n
		},
		cli: func(t *testing.T, q string) [][]string {
			t.Helper()
			cmd := exec.Command(pgtest.Bin(t, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-d", dsn, "-c", q)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, stderr.Bytes())
			}
			rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatalf("psql output %q: %v", out, err)
			}
			return rows
		},
		ts: func(col string) string {
			return `to_char(` + col + ` AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
		},
	}
}

func TestPostgres(t *testing.T) { runStoreSuite(t, postgresFixture) }

func TestPostgresDescribe(t *testing.T) {
	dsn := pgtest.Start(t)
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := url.Parse(dsn)
	want := fmt.Sprintf("postgres://%s@%s%s", pgtest.User, u.Host, u.Path)
	if s.Describe() != want {
		t.Errorf("Describe = %q, want %q", s.Describe(), want)
	}
	if strings.Contains(s.Describe(), pgtest.Password) {
		t.Error("Describe shows the password")
	}
	bs, err := Open(ctx, bench.LedgerConfig{Driver: bench.LedgerPostgres, DSN: dsn}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := bs.(*PostgresStore); !ok {
		t.Errorf("Open(postgres) = %T", bs)
	}
	bs.Close()
}

func TestPostgresUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	_, err = OpenPostgres(ctx, fmt.Sprintf("postgres://hil:s3cret-pw@127.0.0.1:%d/ledgerdb?sslmode=disable", port))
	wantErr(t, err, ErrUnavailable)
	for _, s := range []string{fmt.Sprintf("127.0.0.1:%d", port), "ledgerdb"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not name %s: %v", s, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error shows the password: %v", err)
	}
	_, err = OpenPostgres(ctx, "postgres://hil:s3cret-pw@127.0.0.1:notaport/db")
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("bad DSN: %v", err)
	}
}

// proxy forwards TCP connections to the cluster and can cut them all, as a network failure.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target, addr string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

// cut stops accepting and closes every connection.
func (p *proxy) cut() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestPostgresConnectionLost(t *testing.T) {
	dsn := pgtest.Start(t)
	u, _ := url.Parse(dsn)
	p := newProxy(t, u.Host, "127.0.0.1:0")
	via := *u
	via.Host = p.l.Addr().String()
	s, err := OpenPostgres(ctx, via.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustReserve(t, s, res("a", "", "dak", 0))
	p.cut()
	for _, op := range []func() error{
		func() error { _, _, err := s.Reserve(ctx, res("b", "", "dak", 0)); return err },
		func() error { _, err := s.Get(ctx, 1); return err },
		func() error { _, err := s.Check(ctx); return err },
	} {
		err := op()
		wantErr(t, err, ErrUnavailable)
		if !strings.Contains(err.Error(), via.Host) || strings.Contains(err.Error(), pgtest.Password) {
			t.Errorf("error: %v", err)
		}
	}
	// The network comes back: the store reconnects, and the failed reservation left nothing.
	newProxy(t, u.Host, via.Host)
	if _, b := mustReserve(t, s, res("c", "", "dak", 0)); b.Used != 2 {
		t.Errorf("budget %+v, want 2 used", b)
	}
}

func TestPostgresNotALedger(t *testing.T) {
	dsn := pgtest.Start(t)
	conn := pgConn(t, dsn)
	// Other applications' tables are no concern of the ledger's.
	if _, err := conn.Exec(ctx, "CREATE TABLE inventory (sku TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A records table that is not the ledger's.
	dsn2 := pgtest.Start(t)
	conn2 := pgConn(t, dsn2)
	if _, err := conn2.Exec(ctx, "CREATE TABLE records (id INT)"); err != nil {
		t.Fatal(err)
	}
	_, err = OpenPostgres(ctx, dsn2)
	wantErr(t, err, ErrCorrupt)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 1 {
		t.Errorf("the refused open wrote: %d tables, %v", n, err)
	}
}

func TestPostgresConcurrentOpen(t *testing.T) {
	// Stations starting together migrate a new database once.
	dsn := pgtest.Start(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var n int
	if err := pgConn(t, dsn).QueryRow(ctx, "SELECT COUNT(*) FROM ledger_migrations").Scan(&n); err != nil || n != SchemaVersion {
		t.Errorf("%d migration rows, %v", n, err)
	}
}

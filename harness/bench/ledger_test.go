package bench_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hilbench/harness/bench"
)

func TestLedgerKey(t *testing.T) {
	dir := benchDir(t)
	cases := []struct {
		name string
		yaml string
		want bench.LedgerConfig
	}{
		{"absent", "", bench.LedgerConfig{}},
		{"sqlite relative", "ledger:\n  driver: sqlite\n  path: state/ledger.db\n",
			bench.LedgerConfig{Driver: bench.LedgerSQLite, Path: filepath.Join(dir, "state/ledger.db")}},
		{"sqlite default path", "ledger: {driver: sqlite}\n", bench.LedgerConfig{Driver: bench.LedgerSQLite}},
		{"driver left out", "ledger: {path: /var/lib/hil/ledger.db}\n",
			bench.LedgerConfig{Driver: bench.LedgerSQLite, Path: "/var/lib/hil/ledger.db"}},
		{"postgres", "ledger:\n  driver: postgres\n  dsn: \"postgres://hil@db.lab:5432/ledger?sslmode=verify-full\"\n",
			bench.LedgerConfig{Driver: bench.LedgerPostgres, DSN: "postgres://hil@db.lab:5432/ledger?sslmode=verify-full"}},
		{"postgres key=value", "ledger: {driver: postgres, dsn: \"host=db.lab dbname=ledger user=hil\"}\n",
			bench.LedgerConfig{Driver: bench.LedgerPostgres, DSN: "host=db.lab dbname=ledger user=hil"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := parse(t, dir, head+dut1+c.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if b.Ledger != c.want {
				t.Fatalf("Ledger = %+v, want %+v", b.Ledger, c.want)
			}
			// Marshal writes it back so that Load reads the same.
			data, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if c.want == (bench.LedgerConfig{}) && strings.Contains(string(data), "ledger") {
				t.Errorf("a bench without a ledger key marshals one:\n%s", data)
			}
			if c.want.Path == filepath.Join(dir, "state/ledger.db") && !strings.Contains(string(data), "path: state/ledger.db") {
				t.Errorf("ledger path not written relative:\n%s", data)
			}
			back, err := parse(t, dir, string(data))
			if err != nil {
				t.Fatalf("parse of marshalled bench: %v\n%s", err, data)
			}
			if back.Ledger != b.Ledger {
				t.Errorf("round trip: %+v, want %+v", back.Ledger, b.Ledger)
			}
		})
	}
}

func TestLedgerKeyErrors(t *testing.T) {
	dir := benchDir(t)
	// ledger lines start on line 12 (after head and dut1).
	cases := []struct {
		name string
		yaml string
		want string
		kind error
	}{
		{"unknown driver", "ledger: {driver: mysql}\n", `lab3.yaml:12: ledger.driver: "mysql" is not one of sqlite, postgres`, bench.ErrInvalid},
		{"postgres without dsn", "ledger:\n  driver: postgres\n", `lab3.yaml:12: ledger: missing required field "dsn"`, bench.ErrMissingField},
		{"path for postgres", "ledger:\n  driver: postgres\n  dsn: postgres://h/db\n  path: x.db\n",
			`lab3.yaml:15: ledger.path: only for driver sqlite, not postgres (postgres takes dsn)`, bench.ErrInvalid},
		{"dsn for sqlite", "ledger:\n  driver: sqlite\n  dsn: postgres://h/db\n", `lab3.yaml:14: ledger.dsn: only for driver postgres, not sqlite`, bench.ErrInvalid},
		{"dsn not a URL", "ledger:\n  driver: postgres\n  dsn: mysql://h/db\n",
			`lab3.yaml:14: ledger.dsn: want a postgres:// URL (postgres://user@host:5432/ledger) or key=value connection string`, bench.ErrInvalid},
		{"dsn without database", "ledger:\n  driver: postgres\n  dsn: \"postgres://hil:s3cret@db.lab:5432\"\n",
			`lab3.yaml:14: ledger.dsn: want the database after the host, as postgres://user@host:5432/ledger`, bench.ErrInvalid},
		{"empty path", "ledger:\n  path: \"\"\n", `lab3.yaml:13: ledger.path: must not be empty (leave it out for <output>/ledger.db)`, bench.ErrInvalid},
		{"misspelt field", "ledger:\n  drvier: sqlite\n", `lab3.yaml:13: ledger: unknown field "drvier" (did you mean "driver"?)`, bench.ErrUnknownField},
		{"not a mapping", "ledger: sqlite\n", `lab3.yaml:12: ledger: want a mapping, got "sqlite"`, bench.ErrType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, dir, head+dut1+c.yaml)
			if err == nil {
				t.Fatal("parsed")
			}
			got := messages(dir, err)
			if !reflect.DeepEqual(got, []string{c.want}) {
				t.Errorf("errors:\n%s\nwant\n%s", strings.Join(got, "\n"), c.want)
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("error does not match %v", c.kind)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error repeats the password: %v", err)
			}
		})
	}
}

func TestLedgerKeyInExample(t *testing.T) {
	b, err := bench.Load("../../fixtures/benches/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../../fixtures/benches/hil-out/ledger.db")
	if b.Ledger.Driver != bench.LedgerSQLite || b.Ledger.Path != abs {
		t.Errorf("example ledger = %+v, want sqlite at %s", b.Ledger, abs)
	}
}

package ledger

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"hilbench/harness/bench"
)

// DefaultFile is the SQLite ledger's name in the bench's output directory.
const DefaultFile = "ledger.db"

// Open opens the ledger a bench names (its ledger key): a SQLite file (cfg.Path, default
// <output>/ledger.db) or a PostgreSQL database (cfg.DSN). The zero LedgerConfig is SQLite.
func Open(ctx context.Context, cfg bench.LedgerConfig, output string) (Store, error) {
	switch cfg.Driver {
	case "", bench.LedgerSQLite:
		path := cfg.Path
		if path == "" {
			if output == "" {
				return nil, errors.New("ledger: no ledger path and no output directory to put ledger.db in")
			}
			path = filepath.Join(output, DefaultFile)
		}
		return OpenSQLite(path)
	case bench.LedgerPostgres:
		if cfg.DSN == "" {
			return nil, errors.New("ledger: driver postgres needs a dsn")
		}
		return OpenPostgres(ctx, cfg.DSN)
	}
	return nil, fmt.Errorf("ledger: unknown driver %q (want %s or %s)", cfg.Driver, bench.LedgerSQLite, bench.LedgerPostgres)
}

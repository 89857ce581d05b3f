package ledger

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"hilbench/harness/ledger/pgtest"
)

// The cost of the ledger per device: Reserve, Issue, Advance(verified), each its own durable
// transaction (SQLite: synchronous=FULL, an fsync per commit; PostgreSQL: pgtest's cluster runs
// with fsync off, so its figures are the protocol and the server's work, not a disk's).

func benchSQLite(b *testing.B) Store {
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "ledger.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchPostgres(b *testing.B) Store {
	s, err := OpenPostgres(ctx, pgtest.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchRecords(b *testing.B, s Store) {
	i := 0
	for b.Loop() {
		name := fmt.Sprint("bench-", i)
		i++
		rec, _, err := s.Reserve(ctx, res(name, name, "dak", 0))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Issue(ctx, rec.ID, certFor(name)); err != nil {
			b.Fatal(err)
		}
		if err := s.Advance(ctx, rec.ID, Verified); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// benchReserveConcurrent reserves from 8 goroutines at once, one DAK for all (the contended
// case: every reservation locks the DAK's row).
func benchReserveConcurrent(b *testing.B, s Store) {
	const workers = 8
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, _, err := s.Reserve(ctx, res(fmt.Sprint("par-", i), "", "dak", 0)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkSQLiteRecord(b *testing.B)     { benchRecords(b, benchSQLite(b)) }
func BenchmarkPostgresRecord(b *testing.B)   { benchRecords(b, benchPostgres(b)) }
func BenchmarkSQLiteReserve8(b *testing.B)   { benchReserveConcurrent(b, benchSQLite(b)) }
func BenchmarkPostgresReserve8(b *testing.B) { benchReserveConcurrent(b, benchPostgres(b)) }

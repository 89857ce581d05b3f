package issue

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/ledger/pgtest"
	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/softdak"
)

// benchCSRs makes n CSRs of fresh keys (outside the timed part).
func benchCSRs(b *testing.B, f *fixture, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	for i := range out {
		out[i] = f.csrB(b, newKeyB(b))
	}
	return out
}

// BenchmarkIssueAlone is issuance without any record: CSR check, sign, signature check.
func BenchmarkIssueAlone(b *testing.B) {
	f := newBenchFixture(b, nil)
	csrs := benchCSRs(b, f, b.N)
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.p.Certs.Issue(csrs[i]); err != nil {
			b.Fatal(err)
		}
	}
	reportPerDevice(b)
}

// BenchmarkIssueAudited is issuance and the audit log's fsynced append, without a ledger: what
// a station did before the ledger (less its budget counter's fsync). The ledger's cost is the
// difference to BenchmarkIssueLedgerSQLite/issue.
func BenchmarkIssueAudited(b *testing.B) {
	f := newBenchFixture(b, nil)
	log, err := audit.Open(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	csrs := benchCSRs(b, f, b.N)
	b.ResetTimer()
	for i := range b.N {
		is, err := f.p.Certs.Issue(csrs[i])
		if err != nil {
			b.Fatal(err)
		}
		if err := log.Append(audit.FromIssued(is)); err != nil {
			b.Fatal(err)
		}
	}
	reportPerDevice(b)
}

// BenchmarkIssueLedgerSQLite is the pipeline with a SQLite ledger (synchronous=FULL) and the
// audit log: reserve, sign, audit, issued; "lifecycle" adds stored and verified, as a device's
// provisioning does.
func BenchmarkIssueLedgerSQLite(b *testing.B) {
	for _, lifecycle := range []bool{false, true} {
		name := "issue"
		if lifecycle {
			name = "lifecycle"
		}
		b.Run(name, func(b *testing.B) {
			f := newBenchFixture(b, func(dir string) ledger.Store {
				lg, err := ledger.OpenSQLite(filepath.Join(dir, "ledger.db"))
				if err != nil {
					b.Fatal(err)
				}
				return lg
			})
			benchPipeline(b, f, lifecycle)
		})
	}
}

// BenchmarkIssueLedgerPostgres is the same on PostgreSQL (the test cluster runs with fsync off).
func BenchmarkIssueLedgerPostgres(b *testing.B) {
	for _, lifecycle := range []bool{false, true} {
		name := "issue"
		if lifecycle {
			name = "lifecycle"
		}
		b.Run(name, func(b *testing.B) {
			f := newBenchFixture(b, openPostgresB(b))
			benchPipeline(b, f, lifecycle)
		})
	}
}

// BenchmarkIssue8StationsPostgres: 8 stations (each its own pipeline, DAK copy and audit log)
// issuing at once through one PostgreSQL ledger and one DAK budget.
func BenchmarkIssue8StationsPostgres(b *testing.B) {
	open := openPostgresB(b)
	dsnDir := b.TempDir()
	var stations []*fixture
	for range 8 {
		stations = append(stations, newBenchFixture(b, func(string) ledger.Store { return open(dsnDir) }))
	}
	csrs := make([][][]byte, len(stations))
	per := b.N/len(stations) + 1
	for i, f := range stations {
		csrs[i] = benchCSRs(b, f, per)
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, len(stations))
	for i, f := range stations {
		go func() {
			for j := 0; j < per && next.Add(1) <= int64(b.N); j++ {
				if _, err := f.p.Issue(context.Background(), device.IssueRequest{Target: "slot", CSRPEM: csrs[i][j]}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range stations {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "issued/s")
}

// BenchmarkIssueDurable8Clients: 8 clients issuing at once through one pipeline with a SQLite
// ledger (synchronous=FULL) and the fsynced audit log, as the signing agent serves a line of
// stations: the figure group commit is for.
func BenchmarkIssueDurable8Clients(b *testing.B) {
	f := newBenchFixture(b, func(dir string) ledger.Store {
		lg, err := ledger.OpenSQLite(filepath.Join(dir, "ledger.db"))
		if err != nil {
			b.Fatal(err)
		}
		return lg
	})
	const clients = 8
	csrs := benchCSRs(b, f, b.N)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, clients)
	for range clients {
		go func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					done <- nil
					return
				}
				if _, err := f.p.Issue(context.Background(), device.IssueRequest{Target: "slot", CSRPEM: csrs[i]}); err != nil {
					done <- err
					return
				}
			}
		}()
	}
	for range clients {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "issued/s")
}

func benchPipeline(b *testing.B, f *fixture, lifecycle bool) {
	csrs := benchCSRs(b, f, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		is, err := f.p.Issue(ctx, device.IssueRequest{Target: "slot", CSRPEM: csrs[i]})
		if err != nil {
			b.Fatal(err)
		}
		if lifecycle {
			if err := f.p.Stored(ctx, is.Certificate); err != nil {
				b.Fatal(err)
			}
			if err := f.p.Verified(ctx, is.Certificate); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerDevice(b)
}

func reportPerDevice(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/device")
}

func openPostgresB(b *testing.B) func(string) ledger.Store {
	dsn, err := pgtest.StartDB()
	if err != nil {
		b.Skip(err)
	}
	return func(string) ledger.Store {
		lg, err := ledger.OpenPostgres(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		return lg
	}
}

// newBenchFixture is newFixture for benchmarks: open makes the ledger (nil: none, issuance only).
func newBenchFixture(b *testing.B, open func(dir string) ledger.Store) *fixture {
	b.Helper()
	d, err := softdak.Open(testDAK.init.Key, testDAK.init.Certificate)
	if err != nil {
		b.Fatal(err)
	}
	prof, err := pki.LoadProfile("../../fixtures/profiles/device.conf", pki.ProfileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	f := &fixture{signer: &countingSigner{Signer: d}, dir: dir, profile: prof}
	chain := f.signer.Chain()
	f.p = &Pipeline{Certs: &pki.Issuer{Profile: prof, Signer: f.signer, CA: chain[0], Intermediates: chain[1:]}, Station: "bench"}
	if open != nil {
		f.ledger = open(dir)
		log, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		f.p.Ledger, f.p.Audit, f.audit = f.ledger, log, log
		b.Cleanup(func() { f.p.Close() })
	}
	return f
}

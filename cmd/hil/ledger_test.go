package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/budget"
	"hilbench/targets/simbench"
)

// provisioned starts a simulated bench of n devices and provisions them all.
func provisioned(t *testing.T, n int) *simbench.Bench {
	t.Helper()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: n, BootDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"provision", "--bench", sb.BenchFile, "--all"}, &out, &out); err != nil {
		t.Fatalf("provision: %v\n%s", err, out.String())
	}
	return sb
}

func hil(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, &out, &out)
	return out.String(), err
}

type exported struct {
	Device      string `json:"device"`
	DeviceKey   string `json:"device_key"`
	Serial      string `json:"serial"`
	Fingerprint string `json:"fingerprint"`
	State       string `json:"state"`
	Target      string `json:"target"`
	ChainPEM    string `json:"chain_pem"`
}

func exportJSONL(t *testing.T, benchFile string) []exported {
	t.Helper()
	out, err := hil(t, "ledger", "export", "--bench", benchFile, "--format", "jsonl")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	var recs []exported
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r exported
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// The export lists every certificate with what a factory needs, and Debian's sqlite3 reading the
// ledger file agrees with it.
func TestLedgerExportAgreesWithSQLite3(t *testing.T) {
	sb := provisioned(t, 3)
	recs := exportJSONL(t, sb.BenchFile)
	if len(recs) != 3 {
		t.Fatalf("%d exported records, want 3", len(recs))
	}
	for _, r := range recs {
		chain, err := pki.ParseChainPEM([]byte(r.ChainPEM))
		if err != nil || r.Serial == "" || r.State != "verified" || r.Device == "" || !strings.HasPrefix(r.Target, "dut") ||
			pki.Fingerprint(chain[0]) != r.Fingerprint || audit.SerialHex(chain[0]) != r.Serial {
			t.Errorf("exported record %+v (chain: %v)", r, err)
		}
	}
	sqlite3, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sqlite3 not installed (Debian package sqlite3)")
		}
		t.Skip("sqlite3 not installed (Debian package sqlite3)")
	}
	db := filepath.Join(sb.Bench.Output, "ledger.db")
	out, err := exec.Command(sqlite3, "-readonly", "-separator", " ", db,
		"SELECT serial, cert_sha256, state, target FROM records ORDER BY id").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	var want []string
	for _, r := range recs {
		want = append(want, strings.Join([]string{r.Serial, r.Fingerprint, r.State, r.Target}, " "))
	}
	if got := strings.TrimSpace(string(out)); got != strings.Join(want, "\n") {
		t.Fatalf("sqlite3 reads:\n%s\nhil ledger export says:\n%s", got, strings.Join(want, "\n"))
	}

	out2, err := hil(t, "ledger", "export", "--bench", sb.BenchFile, "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out2)).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][0] != "id" {
		t.Fatalf("csv export: %v, %d rows\n%s", err, len(rows), out2)
	}
}

// check passes on a consistent ledger and fails, naming the problem, on one edited by hand.
func TestLedgerCheckFindsTampering(t *testing.T) {
	sb := provisioned(t, 2)
	if out, err := hil(t, "ledger", "check", "--bench", sb.BenchFile); err != nil || !strings.Contains(out, "consistent") {
		t.Fatalf("check of a fresh ledger: %v\n%s", err, out)
	}
	sqlite3, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("sqlite3 not installed (Debian package sqlite3)")
	}
	db := filepath.Join(sb.Bench.Output, "ledger.db")
	for _, tc := range []struct{ sql, problem string }{
		{"UPDATE daks SET used = used - 1", "budget_mismatch"},
		{"UPDATE records SET chain_pem = '' WHERE id = 1", "missing_chain"},
	} {
		t.Run(tc.problem, func(t *testing.T) {
			backup, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sqlite3, db, tc.sql).CombinedOutput(); err != nil {
				t.Fatalf("sqlite3: %v\n%s", err, out)
			}
			out, err := hil(t, "ledger", "check", "--bench", sb.BenchFile)
			if err == nil || !strings.Contains(out, tc.problem) {
				t.Fatalf("check after %q: %v\n%s", tc.sql, err, out)
			}
			if err := os.WriteFile(db, backup, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A ledger deleted under an audit log that records certificates stops the station before any
// device is touched; import brings the audit log back in, and the station runs again.
func TestDeletedLedgerIsRefusedUntilImported(t *testing.T) {
	sb := provisioned(t, 2)
	db := filepath.Join(sb.Bench.Output, "ledger.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(db + suffix)
	}
	runs, _ := filepath.Glob(filepath.Join(sb.Bench.Output, "runs", "*"))
	out, err := hil(t, "provision", "--bench", sb.BenchFile, "--all")
	if err == nil || !strings.Contains(out, "hil ledger import") && !strings.Contains(err.Error(), "hil ledger import") {
		t.Fatalf("provision on a deleted ledger: %v\n%s", err, out)
	}
	if after, _ := filepath.Glob(filepath.Join(sb.Bench.Output, "runs", "*")); len(after) != len(runs) {
		t.Fatalf("a refused station started a run (%d runs, %d before)", len(after), len(runs))
	}
	if out, err := hil(t, "ledger", "import", "--bench", sb.BenchFile); err != nil || !strings.Contains(out, "imported 2 record(s)") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if out, err := hil(t, "ledger", "check", "--bench", sb.BenchFile); err != nil {
		t.Fatalf("check after import: %v\n%s", err, out)
	}
	// The imported records are the devices' identities: provisioning again signs nothing.
	out, err = hil(t, "provision", "--bench", sb.BenchFile, "--all")
	if err != nil || strings.Count(out, "already provisioned (ledger record matches)") != 2 {
		t.Fatalf("provision after import: %v\n%s", err, out)
	}
	if recs := exportJSONL(t, sb.BenchFile); len(recs) != 2 || recs[0].State != "verified" || recs[1].State != "verified" {
		t.Fatalf("ledger after import and provision: %+v", recs)
	}
}

// An earlier release's signature counter that counts more than the ledger (signatures whose
// records are lost) is refused until imported, and then counted.
func TestEarlierBudgetCounterAhead(t *testing.T) {
	sb := provisioned(t, 1)
	dak, err := dakCertificate(sb.Bench)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sb.Bench.Output, "signer", "budget")
	bud, err := budget.Open(path, dak, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := bud.Reserve(); err != nil {
			t.Fatal(err)
		}
	}
	bud.Close()
	out, err := hil(t, "provision", "--bench", sb.BenchFile, "--all")
	if err == nil || !strings.Contains(err.Error(), "counts 5 signatures") {
		t.Fatalf("provision with a counter ahead of the ledger: %v\n%s", err, out)
	}
	if out, err := hil(t, "ledger", "import", "--bench", sb.BenchFile, "--budget", path); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if out, err := hil(t, "ledger", "check", "--bench", sb.BenchFile); err != nil {
		t.Fatalf("check after importing the counter: %v\n%s", err, out)
	}
	if out, err := hil(t, "provision", "--bench", sb.BenchFile, "--all"); err != nil {
		t.Fatalf("provision after import: %v\n%s", err, out)
	}
}

// A PostgreSQL ledger that cannot be reached stops the station before any device is touched.
func TestUnreachableLedgerStopsBeforeDevices(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 1, BootDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	b := sb.Bench
	b.Ledger = bench.LedgerConfig{Driver: bench.LedgerPostgres, DSN: "postgres://hil@127.0.0.1:1/hil?connect_timeout=2"}
	benchFile := filepath.Join(sb.Dir, "bench-pg.yaml")
	if err := b.Write(benchFile); err != nil {
		t.Fatal(err)
	}
	out, err := hil(t, "provision", "--bench", benchFile, "--all")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("provision with the ledger down: %v\n%s", err, out)
	}
	if strings.Contains(out, "dut1") {
		t.Fatalf("a device was worked on with the ledger down:\n%s", out)
	}
}

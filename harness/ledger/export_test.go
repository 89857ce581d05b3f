package ledger

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestWriteJSONLAndCSV(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891000, time.UTC)
	recs := []Record{
		{ID: 1, DeviceKey: "k1", DeviceID: "SN1", Target: "dut1", DAKSHA256: "d", State: Verified, Signatures: 1,
			Serial: "0A", CertSHA256: "f1", Subject: "CN=a, O=b", ChainPEM: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
			ReservedAt: at, IssuedAt: at, VerifiedAt: at},
		{ID: 2, DeviceKey: "k2", Target: "dut2", DAKSHA256: "d", State: Reserved, Signatures: 2, ReservedAt: at, ReplacedBy: 0},
	}
	var jb bytes.Buffer
	if err := WriteJSONL(&jb, recs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(jb.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), jb.String())
	}
	var m []map[string]any
	for _, l := range lines {
		var x map[string]any
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatal(err)
		}
		m = append(m, x)
	}
	if m[0]["device"] != "SN1" || m[1]["device"] != "k2" || m[0]["serial"] != "0A" || m[0]["fingerprint"] != "f1" ||
		m[0]["state"] != "verified" || m[0]["target"] != "dut1" || m[0]["chain_pem"] != recs[0].ChainPEM ||
		m[0]["reserved_at"] != "2026-03-04T05:06:07.000891Z" {
		t.Errorf("JSONL: %v", m)
	}
	if _, ok := m[1]["issued_at"]; ok {
		t.Errorf("a zero time is exported: %v", m[1])
	}
	var back Exported
	if err := json.Unmarshal([]byte(lines[0]), &back); err != nil || back.Record.ID != 1 || !back.Record.IssuedAt.Equal(at) {
		t.Errorf("JSONL does not read back into Exported: %+v, %v", back, err)
	}

	var cb bytes.Buffer
	if err := WriteCSV(&cb, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || !slices.Equal(rows[0], CSVHeader) {
		t.Fatalf("CSV: %q", rows)
	}
	col := func(row int, name string) string { return rows[row][slices.Index(CSVHeader, name)] }
	if col(1, "device") != "SN1" || col(2, "device") != "k2" || col(1, "subject") != "CN=a, O=b" || col(1, "fingerprint") != "f1" ||
		col(1, "reserved_at") != "2026-03-04T05:06:07.000891Z" || col(2, "issued_at") != "" || col(2, "replaced_by") != "" || col(2, "signatures") != "2" {
		t.Errorf("CSV rows: %q", rows[1:])
	}
	if strings.Contains(cb.String(), "BEGIN CERTIFICATE") {
		t.Error("the CSV holds the chain")
	}
}

func TestDescribePostgres(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://hil:secret@db.lab:5433/ledger?sslmode=disable":    "postgres://hil@db.lab:5433/ledger",
		"host=/run/postgresql user=hil dbname=ledger password=secret": "postgres://hil@:5432/ledger?host=%2Frun%2Fpostgresql",
		"postgres://hil:secret@[::1]/ledger":                          "postgres://hil@[::1]:5432/ledger",
	} {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := describePostgres(cfg); got != want || strings.Contains(got, "secret") {
			t.Errorf("describe(%q) = %q, want %q", dsn, got, want)
		}
	}
}

package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// seedLedger is the file of a small SQLite ledger: two records, one issued.
func seedLedger(tb testing.TB) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ledger.db")
	s, err := OpenSQLite(path)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for i, key := range []string{"aa", "bb"} {
		r := Record{DeviceKey: key, Target: "slot", Station: "st", RunID: "run", DAKSHA256: "dd", State: Reserved, Signatures: 1}
		if i == 1 {
			r.State, r.CertSHA256, r.ChainPEM, r.IssuedAt = Issued, "cc", "-----BEGIN CERTIFICATE-----\n", time.Unix(1e9, 0)
		}
		if _, err := s.Import(ctx, r); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// FuzzOpenSQLite: any bytes opened as a SQLite ledger open, or fail with ErrCorrupt or
// ErrSchemaTooNew and leave the file as it was; nothing panics. Inputs are mutations of a real
// ledger file (its header, pages and b-trees), kept under 256 KiB.
func FuzzOpenSQLite(f *testing.F) {
	good := seedLedger(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:100])
	f.Add([]byte("SQLite format 3\x00"))
	f.Add([]byte("not a database"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256<<10 || len(data) == 0 {
			t.Skip() // an empty file is a new ledger
		}
		path := filepath.Join(dir, "ledger.db")
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			_ = os.Remove(path + suffix)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSQLite(path)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchemaTooNew) {
				t.Fatalf("OpenSQLite failed with neither ErrCorrupt nor ErrSchemaTooNew: %v", err)
			}
			if now, rerr := os.ReadFile(path); rerr != nil || !bytes.Equal(now, data) {
				t.Fatalf("OpenSQLite refused the file (%v) but changed it (%v)", err, rerr)
			}
			return
		}
		defer s.Close()
		if _, err := s.List(context.Background(), Filter{}); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("List of an opened ledger: %v", err)
		}
	})
}

// FuzzImportJSONL: records read from JSON lines (the export format) import into a ledger or
// fail with an error, without a panic; an imported record with a fingerprint is found by it
// and importing it again is skipped.
func FuzzImportJSONL(f *testing.F) {
	var b bytes.Buffer
	recs := []Record{
		{ID: 7, DeviceKey: "k1", DeviceID: "G0A1", Target: "slot1", Station: "st", RunID: "r", DAKSHA256: "dak", State: Reserved, Signatures: 1},
		{ID: 8, DeviceKey: "k2", Target: "slot2", Station: "st", RunID: "r", DAKSHA256: "dak", State: Verified, Signatures: 2,
			CertSHA256: "fp2", ChainPEM: "pem", IssuedAt: time.Unix(1.7e9, 0).UTC(), VerifiedAt: time.Unix(1.8e9, 0).UTC()},
	}
	if err := WriteJSONL(&b, recs); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte(`{"device_key":"k","dak_sha256":"d","state":"replaced","signatures":-1}` + "\n"))
	f.Add([]byte(`{"device_key":"k","dak_sha256":"d","state":"bogus"}` + "\n{}\n[]\n"))
	s, err := OpenSQLite(filepath.Join(f.TempDir(), "ledger.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			t.Skip()
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var r Record
			if json.Unmarshal(line, &r) != nil {
				continue
			}
			imported, err := s.Import(ctx, r)
			if err != nil || !imported || r.CertSHA256 == "" {
				continue
			}
			again, err := s.Import(ctx, r)
			if err != nil || again {
				t.Fatalf("importing %q twice: %v, %v", line, again, err)
			}
			got, err := s.List(ctx, Filter{DeviceKey: r.DeviceKey})
			n := 0
			for _, g := range got {
				if g.CertSHA256 == r.CertSHA256 && g.State == r.State && g.DAKSHA256 == r.DAKSHA256 {
					n++
				}
			}
			if err != nil || n != 1 {
				t.Fatalf("imported %q, found %d of it in %+v, %v", line, n, got, err)
			}
		}
	})
}

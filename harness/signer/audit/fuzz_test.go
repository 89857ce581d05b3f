package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen: any audit log opens without a panic; it indexes exactly the complete lines that are
// records with a valid CSR SHA-256, Find returns each, a truncated last line is terminated, and
// a record appended afterwards is found, also after reopening.
func FuzzOpen(f *testing.F) {
	var good []byte
	for i := range 3 {
		b, err := json.Marshal(record(i))
		if err != nil {
			f.Fatal(err)
		}
		good = append(append(good, b...), '\n')
	}
	f.Add(good)
	f.Add(good[:len(good)-30]) // torn last record
	f.Add(append([]byte("not json\n\n{}\n"), good...))
	f.Add(bytes.ReplaceAll(good, []byte(`"csr_sha256":"`), []byte(`"csr_sha256":"AB`)))
	f.Add([]byte(`{"csr_sha256":"` + SHA256Hex([]byte("x")) + `"}` + "\n" + `{"csr_sha256":"` + SHA256Hex([]byte("x")) + `","serial":"02"}` + "\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip()
		}
		path := filepath.Join(dir, "audit.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer l.Close()
		// The records, as the format defines them: complete lines holding a JSON record
		// whose csr_sha256 is 64 hex digits.
		want := 0
		keys := map[string]bool{}
		lines := bytes.SplitAfter(data, []byte("\n"))
		for _, line := range lines {
			if !bytes.HasSuffix(line, []byte("\n")) {
				continue
			}
			var rec Record
			if json.Unmarshal(line, &rec) != nil || len(rec.CSRSHA256) != 64 {
				continue
			}
			if _, err := hex.DecodeString(rec.CSRSHA256); err != nil {
				continue
			}
			want++
			keys[rec.CSRSHA256] = true
		}
		if l.Len() != want {
			t.Fatalf("Open indexed %d records of %q, want %d", l.Len(), data, want)
		}
		for k := range keys {
			if rec, ok := l.Find(k); !ok || !bytes.EqualFold([]byte(rec.CSRSHA256), []byte(k)) {
				t.Fatalf("Find(%s) = %v, %v", k, rec, ok)
			}
		}
		now, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(now) > 0 && now[len(now)-1] != '\n' {
			t.Fatalf("Open left the log ending in %q", now[max(0, len(now)-10):])
		}
		rec := record(7)
		rec.CSRSHA256 = SHA256Hex(data)
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if _, ok := l.Find(rec.CSRSHA256); !ok || l.Len() != want+1 {
			t.Fatalf("appended record not found (%d records)", l.Len())
		}
		l.Close()
		again, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if _, ok := again.Find(rec.CSRSHA256); !ok {
			t.Fatalf("appended record lost on reopening")
		}
	})
}

package audit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hilbench/harness/pki"
	"hilbench/harness/signer/softdak"
)

func record(i int) Record {
	return Record{
		Time:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Target:     fmt.Sprintf("slot%d", i),
		Client:     &Peer{PID: 100 + i, UID: 1000},
		CSRSHA256:  SHA256Hex([]byte(fmt.Sprint("csr", i))),
		Serial:     fmt.Sprintf("%02X", i),
		CertSHA256: SHA256Hex([]byte(fmt.Sprint("cert", i))),
		Subject:    fmt.Sprintf("CN=device %d", i),
		DAKSHA256:  SHA256Hex([]byte("dak")),
		ChainPEM:   fmt.Sprintf("-----BEGIN CERTIFICATE-----\nchain %d\n-----END CERTIFICATE-----\n", i),
	}
}

func mustOpen(t *testing.T, path string) *Log {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestAppendFindReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "audit.jsonl")
	l := mustOpen(t, path)
	for i := range 5 {
		if err := l.Append(record(i)); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", fi.Mode().Perm())
	}
	got, ok := l.Find(record(3).CSRSHA256)
	if !ok {
		t.Fatal("record 3 not found")
	}
	want := record(3)
	if !got.Time.Equal(want.Time) || got.ChainPEM != want.ChainPEM || *got.Client != *want.Client || got.Target != want.Target {
		t.Fatalf("found %+v, want %+v", got, want)
	}
	if _, ok := l.Find(SHA256Hex([]byte("other"))); ok {
		t.Fatal("found a record never written")
	}
	if _, ok := l.Find("not hex"); ok {
		t.Fatal("found a malformed hash")
	}
	l.Close()

	l2 := mustOpen(t, path)
	if l2.CountDAK(record(0).DAKSHA256) != 5 || l2.CountDAK("other") != 0 {
		t.Fatalf("CountDAK %d", l2.CountDAK(record(0).DAKSHA256))
	}
	if l2.Len() != 5 || len(l2.Warnings()) != 0 {
		t.Fatalf("reopened: %d records, warnings %q", l2.Len(), l2.Warnings())
	}
	for i := range 5 {
		r, ok := l2.Find(strings.ToUpper(record(i).CSRSHA256))
		if !ok || r.Serial != record(i).Serial {
			t.Fatalf("record %d after reopen: %+v %v", i, r, ok)
		}
	}
	// Each line is one JSON object with the documented field names.
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "target", "client", "csr_sha256", "serial", "cert_sha256", "subject", "dak_sha256", "chain_pem"} {
		if _, ok := m[k]; !ok {
			t.Errorf("record lacks %q: %s", k, lines[0])
		}
	}
}

func TestTruncatedLastLineSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	if err := l.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// Power cut in the middle of the second record's write.
	line, _ := json.Marshal(record(2))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line[:len(line)/2])
	f.Close()

	l2 := mustOpen(t, path)
	if w := l2.Warnings(); len(w) != 1 || !strings.Contains(w[0], "truncated") || !strings.Contains(w[0], "line 2") {
		t.Fatalf("warnings %q", w)
	}
	if _, ok := l2.Find(record(1).CSRSHA256); !ok {
		t.Fatal("record before the truncated line lost")
	}
	if _, ok := l2.Find(record(2).CSRSHA256); ok {
		t.Fatal("truncated record found")
	}
	if err := l2.Append(record(3)); err != nil {
		t.Fatal(err)
	}
	if _, ok := l2.Find(record(3).CSRSHA256); !ok {
		t.Fatal("record appended after the truncated line not found")
	}
	l2.Close()

	l3 := mustOpen(t, path)
	if l3.Len() != 2 {
		t.Fatalf("%d records, want 2", l3.Len())
	}
	if w := l3.Warnings(); len(w) != 1 || !strings.Contains(w[0], "line 2 is not a record") {
		t.Fatalf("warnings %q", w)
	}
	for _, i := range []int{1, 3} {
		if _, ok := l3.Find(record(i).CSRSHA256); !ok {
			t.Fatalf("record %d lost", i)
		}
	}
}

func TestAppendAfterUnterminatedFragment(t *testing.T) {
	// A fragment that appears after Open (a failed write by another
	// process) must not swallow the next record.
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"csr_sha256":"ab`)
	f.Close()
	if err := l.Append(record(7)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l2 := mustOpen(t, path)
	if _, ok := l2.Find(record(7).CSRSHA256); !ok {
		t.Fatal("record glued to a fragment")
	}
}

func TestInvalidRecordsAndModes(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, filepath.Join(dir, "a.jsonl"))
	bad := record(1)
	bad.CSRSHA256 = "xyz"
	if err := l.Append(bad); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("bad hash: %v", err)
	}
	bad = record(1)
	bad.ChainPEM = ""
	if err := l.Append(bad); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("no chain: %v", err)
	}
	open := filepath.Join(dir, "open.jsonl")
	if err := os.WriteFile(open, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-writable log: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "d")); err == nil {
		t.Fatal("opened a directory")
	}
}

func TestConcurrentAppendsTwoLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a, b := mustOpen(t, path), mustOpen(t, path)
	var wg sync.WaitGroup
	for g := range 8 {
		l := a
		if g%2 == 1 {
			l = b
		}
		wg.Go(func() {
			for i := range 20 {
				if err := l.Append(record(g*100 + i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	l := mustOpen(t, path)
	if l.Len() != 160 || len(l.Warnings()) != 0 {
		t.Fatalf("%d records, warnings %q", l.Len(), l.Warnings())
	}
	// Each Log finds what it wrote itself at the right offset, though concurrent appends to one
	// Log share a write and an fsync (group commit).
	for g := range 8 {
		lg := a
		if g%2 == 1 {
			lg = b
		}
		for i := range 20 {
			want := record(g*100 + i)
			if r, ok := lg.Find(want.CSRSHA256); !ok || r.Target != want.Target || r.Serial != want.Serial {
				t.Fatalf("goroutine %d, record %d: %+v %v", g, i, r, ok)
			}
		}
	}
}

func TestFromIssued(t *testing.T) {
	dir := t.TempDir()
	dev, err := softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dak, err := softdak.Open(dev.Key, dev.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	profile, err := pki.LoadProfile("../../../fixtures/profiles/device.conf", pki.ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []pkix.AttributeTypeAndValue
	for _, f := range profile.Subject {
		names = append(names, pkix.AttributeTypeAndValue{Type: f.OID, Value: f.Value})
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{ExtraNames: names}, SignatureAlgorithm: x509.ECDSAWithSHA256}, k)
	if err != nil {
		t.Fatal(err)
	}
	iss := &pki.Issuer{Profile: profile, Signer: dak, CA: dak.Chain()[0]}
	is, err := iss.Issue(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	r := FromIssued(is)
	if r.CSRSHA256 != SHA256Hex(der) || r.CertSHA256 != SHA256Hex(is.Certificate.Raw) ||
		r.DAKSHA256 != SHA256Hex(dev.DAK.Raw) || r.ChainPEM != string(is.ChainPEM) || r.Subject != is.Certificate.Subject.String() {
		t.Fatalf("%+v", r)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	cert := filepath.Join(dir, "leaf.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Certificate.Raw}), 0o600)
	out, err := exec.Command("openssl", "x509", "-in", cert, "-noout", "-serial").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(bytes.TrimSpace(out)); got != "serial="+r.Serial {
		t.Fatalf("openssl says %s, record says %s", got, r.Serial)
	}
}

func BenchmarkAppend(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	i := 0
	for b.Loop() {
		if err := l.Append(record(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// A record of a certificate the log holds is written once, however often (and however
// concurrently) it is appended; the same CSR with another certificate (signed again after a
// crash) is a record of its own.
func TestAppendHeldOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path)
	if err := l.Append(record(1)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, i := range []int{1, 2} {
				if err := l.Append(record(i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	resigned := record(1)
	resigned.CertSHA256, resigned.Serial = SHA256Hex([]byte("cert 1, signed again")), "FF"
	if err := l.Append(resigned); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(resigned); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 3 || l.CountDAK(record(1).DAKSHA256) != 3 {
		t.Errorf("%d records, %d for the DAK; want 3", l.Len(), l.CountDAK(record(1).DAKSHA256))
	}
	l.Close()
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Errorf("%d lines, want 3:\n%s", n, data)
	}
	if got, ok := mustOpen(t, path).Find(record(1).CSRSHA256); !ok || got.Serial != "FF" {
		t.Errorf("latest record of CSR 1: %+v, %v; want the one signed again", got, ok)
	}
}

package budget

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCert makes a throwaway CA certificate standing in for a DAK.
func testCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustOpen(t testing.TB, path string, dak *x509.Certificate, max int64) *Budget {
	t.Helper()
	b, err := Open(path, dak, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestReserveCountsAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "budget")
	dak := testCert(t, "DAK A")
	b := mustOpen(t, path, dak, 5)
	if b.Used() != 0 || b.Max() != 5 || b.Remaining() != 5 {
		t.Fatalf("fresh budget: used %d max %d remaining %d", b.Used(), b.Max(), b.Remaining())
	}
	for i := 1; i <= 3; i++ {
		r, err := b.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		if r.Used != int64(i) || r.Max != 5 || r.Remaining != int64(5-i) {
			t.Fatalf("reservation %d: %+v", i, r)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("counter file mode %v, want 0600", fi.Mode().Perm())
	}
	b.Close()

	b2 := mustOpen(t, path, dak, 5)
	if got := b2.Used(); got != 3 {
		t.Fatalf("after reopen used = %d, want 3", got)
	}
}

func TestExhaustedAfterExactlyMax(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget.json")
	dak := testCert(t, "DAK A")
	b := mustOpen(t, path, dak, 3)
	for range 3 {
		if _, err := b.Reserve(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := b.Reserve()
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("4th reservation: %v, want ErrExhausted", err)
	}
	var ee *ExhaustedError
	if !errors.As(err, &ee) || ee.Used != 3 || ee.Max != 3 {
		t.Fatalf("error %#v", err)
	}
	for _, want := range []string{"3/3", "new DAK", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if b.Used() != 3 || b.Remaining() != 0 {
		t.Fatalf("refused reservation counted: used %d", b.Used())
	}
	// Also after a restart, and with a lower maximum than was used.
	b.Close()
	b2 := mustOpen(t, path, dak, 3)
	if _, err := b2.Reserve(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("after reopen: %v", err)
	}
	b3 := mustOpen(t, path, dak, 2)
	if _, err := b3.Reserve(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("lower max: %v", err)
	}
	// A raised maximum (a new agreement) applies.
	b4 := mustOpen(t, path, dak, 4)
	if r, err := b4.Reserve(); err != nil || r.Used != 4 || r.Remaining != 0 {
		t.Fatalf("raised max: %+v %v", r, err)
	}
}

func TestWarningFrom90Percent(t *testing.T) {
	b := mustOpen(t, filepath.Join(t.TempDir(), "budget.json"), testCert(t, "DAK"), 20)
	for i := int64(1); i <= 20; i++ {
		r, err := b.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		want := i >= 18 // 90% of 20
		if r.Warning != want {
			t.Fatalf("reservation %d: warning %v, want %v", i, r.Warning, want)
		}
		if want && (!strings.Contains(r.Message, fmt.Sprintf("%d/20", i)) || !strings.Contains(r.Message, "new DAK")) {
			t.Fatalf("warning message %q", r.Message)
		}
		if !want && r.Message != "" {
			t.Fatalf("message without warning: %q", r.Message)
		}
	}
}

func TestUnlimitedStillCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget.json")
	b := mustOpen(t, path, testCert(t, "DAK"), 0)
	for range 50 {
		r, err := b.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		if r.Warning || r.Remaining != -1 {
			t.Fatalf("unlimited reservation %+v", r)
		}
	}
	if b.Used() != 50 || b.Remaining() != -1 {
		t.Fatalf("used %d remaining %d", b.Used(), b.Remaining())
	}
}

func TestOtherDAKRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget.json")
	a, other := testCert(t, "DAK A"), testCert(t, "DAK B")
	b := mustOpen(t, path, a, 10)
	if _, err := b.Reserve(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	_, err := Open(path, other, 10)
	if !errors.Is(err, ErrOtherDAK) {
		t.Fatalf("other DAK: %v", err)
	}
	for _, want := range []string{"CN=DAK A", "CN=DAK B", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	var me *DAKMismatchError
	if !errors.As(err, &me) || me.FileSHA256 == me.SHA256 || len(me.FileSHA256) != 64 {
		t.Fatalf("%#v", err)
	}
}

func TestCorruptFileRefused(t *testing.T) {
	dir := t.TempDir()
	dak := testCert(t, "DAK")
	sum := sha256.Sum256(dak.Raw)
	head := `{"hilbench_signature_budget":1,"dak_sha256":"` + hex.EncodeToString(sum[:]) + `","dak_subject":"CN=DAK"}` + "\n"
	for name, content := range map[string]string{
		"empty":         "",
		"garbage":       "not json\n",
		"no header end": head[:20],
		"version":       strings.Replace(head, ":1,", ":9,", 1),
		"unknown field": strings.Replace(head, "{", `{"reset":true,`, 1),
		"gap":           head + "1 t\n3 t\n",
		"restart":       head + "1 t\n2 t\n1 t\n",
		"zero":          head + "0 t\n",
		"bad last line": head + "1 t\nx t\n",
		"long garbage":  head + "1 t\n" + strings.Repeat("\x00", 500),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, dak, 10)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v, want ErrCorrupt", err)
			}
			if data, _ := os.ReadFile(path); string(data) != content {
				t.Fatal("a corrupt counter was rewritten")
			}
		})
	}
}

func TestTornLastLineDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget")
	dak := testCert(t, "DAK")
	b := mustOpen(t, path, dak, 10)
	for range 2 {
		if _, err := b.Reserve(); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	// A power cut during the third Reserve's write: that Reserve never
	// returned, so no signature was made for it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("3 2026-")
	f.Close()
	b2 := mustOpen(t, path, dak, 10)
	if got := b2.Used(); got != 2 {
		t.Fatalf("used %d after torn line, want 2", got)
	}
	r, err := b2.Reserve()
	if err != nil || r.Used != 3 {
		t.Fatalf("%+v %v", r, err)
	}
	// The file is clean again: it opens and continues.
	b2.Close()
	b3 := mustOpen(t, path, dak, 10)
	if got := b3.Used(); got != 3 {
		t.Fatalf("used %d, want 3", got)
	}
	// A torn first reservation (nothing but the header before it).
	path2 := filepath.Join(t.TempDir(), "budget")
	b4 := mustOpen(t, path2, dak, 10)
	b4.Close()
	f, _ = os.OpenFile(path2, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("1")
	f.Close()
	if b5 := mustOpen(t, path2, dak, 10); b5.Used() != 0 {
		t.Fatalf("torn first line: used %d", b5.Used())
	}
}

func TestConcurrentReservationsNeverExceedMax(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget.json")
	dak := testCert(t, "DAK")
	// Two Budgets on the same file (separate lock descriptors, as two
	// processes would have) plus goroutines on each.
	b1 := mustOpen(t, path, dak, 60)
	b2 := mustOpen(t, path, dak, 60)
	var ok, exhausted atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		b := b1
		if i%2 == 1 {
			b = b2
		}
		wg.Go(func() {
			for range 10 {
				_, err := b.Reserve()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrExhausted):
					exhausted.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 60 || exhausted.Load() != 20 || b1.Used() != 60 || b2.Used() != 60 {
		t.Fatalf("ok %d exhausted %d used %d/%d", ok.Load(), exhausted.Load(), b1.Used(), b2.Used())
	}
}

// TestHelperReserve is run as a child process by TestCrossProcess.
func TestHelperReserve(t *testing.T) {
	path := os.Getenv("BUDGET_HELPER_PATH")
	if path == "" {
		t.Skip("helper process only")
	}
	der, err := os.ReadFile(os.Getenv("BUDGET_HELPER_DAK"))
	if err != nil {
		t.Fatal(err)
	}
	dak, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("BUDGET_HELPER_N"))
	b, err := Open(path, dak, 100)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := b.Reserve(); err != nil && !errors.Is(err, ErrExhausted) {
			t.Fatal(err)
		}
	}
}

func TestCrossProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "budget.json")
	dak := testCert(t, "DAK")
	dakFile := filepath.Join(dir, "dak.der")
	if err := os.WriteFile(dakFile, dak.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReserve$")
		cmd.Env = append(os.Environ(), "BUDGET_HELPER_PATH="+path, "BUDGET_HELPER_DAK="+dakFile, "BUDGET_HELPER_N=30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	b := mustOpen(t, path, dak, 100)
	if got := b.Used(); got != 100 {
		t.Fatalf("4 processes x 30 reservations against max 100: used %d, want 100", got)
	}
}

func BenchmarkReserve(b *testing.B) {
	bu := mustOpen(b, filepath.Join(b.TempDir(), "budget.json"), testCert(b, "DAK"), 0)
	for b.Loop() {
		if _, err := bu.Reserve(); err != nil {
			b.Fatal(err)
		}
	}
}

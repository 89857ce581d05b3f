package sim

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

// client is a deliberately tiny HA1 client for these tests: it shares nothing with the driver.
type client struct {
	t    *testing.T
	port serial.Port
	rd   *bufio.Reader
	seq  int
	csr  *x509.CertificateRequest
}

func startModule(t *testing.T, mod func(*Config)) (*Module, *client) {
	t.Helper()
	cfg := Config{Name: "mod1", Dir: filepath.Join(t.TempDir(), "mod1"), BootDelay: 5 * time.Millisecond, Seed: 7, Logf: t.Logf}
	if mod != nil {
		mod(&cfg)
	}
	m, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	p, err := serial.Open(m.PortPath(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	_ = p.SetReadTimeout(5 * time.Second)
	c := &client{t: t, port: p, rd: bufio.NewReader(p)}
	return m, c
}

func (c *client) line() string {
	c.t.Helper()
	s, err := c.rd.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading: %v (got %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

// frame reads lines until one carrying a frame, and returns its fields after checking its CRC.
func (c *client) frame() []string {
	c.t.Helper()
	for {
		l := c.line()
		i := strings.LastIndex(l, "!HA")
		if i < 0 {
			continue
		}
		f := l[i+1:]
		parts := strings.Split(f, "|")
		body := f[:strings.LastIndex(f, "|")+1]
		if len(parts) != 5 || fmt.Sprintf("%08X", crc32.ChecksumIEEE([]byte(body))) != parts[4] {
			c.t.Fatalf("bad frame %q", l)
		}
		return parts
	}
}

func (c *client) raw(seq, verb string, payload []byte) string {
	body := fmt.Sprintf("HA1|%s|%s|%s|", seq, verb, base64.StdEncoding.EncodeToString(payload))
	return fmt.Sprintf("!%s%08X\n", body, crc32.ChecksumIEEE([]byte(body)))
}

func (c *client) call(verb string, payload []byte) (string, []byte) {
	c.t.Helper()
	c.seq = c.seq%255 + 1
	seq := fmt.Sprintf("%02X", c.seq)
	if _, err := c.port.Write([]byte(c.raw(seq, verb, payload))); err != nil {
		c.t.Fatal(err)
	}
	for {
		f := c.frame()
		if f[1] != seq {
			continue
		}
		p, err := base64.StdEncoding.DecodeString(f[3])
		if err != nil {
			c.t.Fatal(err)
		}
		return f[2], p
	}
}

func text(p []byte) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(string(p), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = v
		}
	}
	return out
}

func (c *client) waitBoot() map[string]string {
	c.t.Helper()
	for {
		f := c.frame()
		if f[2] == "BOOT" {
			p, _ := base64.StdEncoding.DecodeString(f[3])
			return text(p)
		}
	}
}

// provision runs the whole cycle with a throwaway CA and returns the chain it stored.
func (c *client) provision(m *Module) []byte {
	c.t.Helper()
	if v, p := c.call("KEYGEN", []byte("force=1\n")); v != "OK" {
		c.t.Fatalf("KEYGEN: %s %s", v, p)
	}
	subject, _ := asn1.Marshal(pkix.Name{CommonName: m.DSN()}.ToRDNSequence())
	v, p := c.call("CSR", subject)
	if v != "OK" {
		c.t.Fatalf("CSR: %s %s", v, p)
	}
	n := 0
	fmt.Sscanf(text(p)["len"], "%d", &n)
	var der []byte
	for len(der) < n {
		v, p := c.call("READ", fmt.Appendf(nil, "area=csr\noff=%d\nlen=256\n", len(der)))
		if v != "OK" {
			c.t.Fatalf("READ: %s", p)
		}
		der = append(der, p[4:]...)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		c.t.Fatalf("CSR: %v", err)
	}
	c.csr = csr
	chain := c.upload(m)
	sum := sha256.Sum256(chain)
	if v, p := c.call("COMMIT", nil); v != "OK" || text(p)["sha256"] != hex.EncodeToString(sum[:]) {
		c.t.Fatalf("COMMIT: %s %s", v, p)
	}
	return chain
}

// upload issues a chain for the last CSR and stages it with BEGIN and DATA.
func (c *client) upload(m *Module) []byte {
	c.t.Helper()
	chain := issue(c.t, c.csr)
	sum := sha256.Sum256(chain)
	if v, p := c.call("BEGIN", fmt.Appendf(nil, "len=%d\nsha256=%s\n", len(chain), hex.EncodeToString(sum[:]))); v != "OK" {
		c.t.Fatalf("BEGIN: %s", p)
	}
	for off := 0; off < len(chain); off += 200 {
		chunk := binary.BigEndian.AppendUint32(nil, uint32(off))
		chunk = append(chunk, chain[off:min(off+200, len(chain))]...)
		if v, p := c.call("DATA", chunk); v != "OK" {
			c.t.Fatalf("DATA: %s", p)
		}
	}
	return chain
}

func issue(t *testing.T, csr *x509.CertificateRequest) []byte {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: csr.Subject, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
}

func TestBootHelloAndProvisioningSurviveRebootAndFactoryReset(t *testing.T) {
	m, c := startModule(t, nil)
	if boot := c.waitBoot(); boot["state"] != "blank" || boot["dsn"] != m.DSN() {
		t.Fatalf("BOOT %v", boot)
	}
	v, p := c.call("HELLO", []byte("dialect=HA1\nhost=test\n"))
	if h := text(p); v != "OK" || h["dialect"] != "HA1" || h["module"] != DefaultModule || h["max_chunk"] != "256" {
		t.Fatalf("HELLO %s %v", v, h)
	}
	chain := c.provision(m)
	if v, p := c.call("KEYGEN", nil); v != "ERR" || text(p)["code"] != "state" {
		t.Errorf("KEYGEN on a provisioned module: %s %s", v, p)
	}
	if err := os.WriteFile(filepath.Join(m.UserDataDir(), "settings.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"REBOOT", "FACTORY_RESET"} {
		if v, _ := c.call(verb, nil); v != "OK" {
			t.Fatalf("%s: %s", verb, v)
		}
		if boot := c.waitBoot(); boot["state"] != "provisioned" {
			t.Fatalf("after %s: %v", verb, boot)
		}
		stored, _ := os.ReadFile(m.CertPath())
		if string(stored) != string(chain) {
			t.Fatalf("after %s the certificate area changed", verb)
		}
	}
	if entries, _ := os.ReadDir(m.UserDataDir()); len(entries) != 0 {
		t.Errorf("factory reset left user data: %v", entries)
	}
}

func TestDamagedFrameGetsNAKAndRepeatIsReplayed(t *testing.T) {
	m, c := startModule(t, nil)
	c.waitBoot()
	good := c.raw("05", "HELLO", nil)
	bad := strings.Replace(good, "HELLO", "HELLP", 1) // CRC no longer matches
	c.port.Write([]byte(bad))
	if f := c.frame(); f[1] != "05" || f[2] != "NAK" {
		t.Fatalf("damaged frame answered %v", f)
	}
	c.port.Write([]byte(good))
	first := c.frame()
	c.port.Write([]byte(good))
	second := c.frame()
	if first[2] != "OK" || strings.Join(first, "|") != strings.Join(second, "|") || m.Stats().Duplicates != 1 {
		t.Errorf("repeat not replayed: %v / %v, stats %+v", first, second, m.Stats())
	}
}

func TestPowerCutDuringCommitNeverLeavesATornCertificate(t *testing.T) {
	for _, at := range []int{1, 63, 64, 700, 100000} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			m, c := startModule(t, nil)
			c.waitBoot()
			old := c.provision(m) // a whole chain is stored: a cut must leave it or the new one
			m.ArmPowerCut(PowerCut{Phase: "commit", AtByte: at, RestoreAfter: 20 * time.Millisecond})
			c.upload(m)
			c.seq++
			c.port.Write([]byte(c.raw(fmt.Sprintf("%02X", c.seq), "COMMIT", nil)))
			f := c.frame()
			cut := at < 100000
			switch {
			case cut && f[2] != "BOOT":
				t.Fatalf("COMMIT answered %v although the power was cut at byte %d", f, at)
			case !cut && f[2] != "OK":
				t.Fatalf("COMMIT answered %v", f)
			}
			data, err := os.ReadFile(m.CertPath())
			if err != nil {
				t.Fatal(err)
			}
			if cut && string(data) != string(old) {
				t.Fatalf("after a cut at byte %d the certificate area holds %d bytes, not the old chain", at, len(data))
			}
			if _, err := os.Stat(m.CertPath() + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("the torn write is still there after boot: %v", err)
			}
		})
	}
}

func TestCSRIsAcceptedByOpenSSL(t *testing.T) {
	m, c := startModule(t, nil)
	c.waitBoot()
	c.call("KEYGEN", nil)
	subject, _ := asn1.Marshal(pkix.Name{CommonName: m.DSN(), Organization: []string{"Example"}}.ToRDNSequence())
	_, p := c.call("CSR", subject)
	n := 0
	fmt.Sscanf(text(p)["len"], "%d", &n)
	var der []byte
	for len(der) < n {
		_, p := c.call("READ", fmt.Appendf(nil, "area=csr\noff=%d\nlen=256\n", len(der)))
		der = append(der, p[4:]...)
	}
	path := filepath.Join(t.TempDir(), "csr.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
	out, err := exec.Command("openssl", "req", "-in", path, "-noout", "-verify", "-subject").CombinedOutput()
	if err != nil || !strings.Contains(string(out), m.DSN()) {
		t.Fatalf("openssl req -verify: %v: %s", err, out)
	}
}

func TestOtherDialectAndTextOnly(t *testing.T) {
	_, c := startModule(t, func(cfg *Config) { cfg.Dialect = "HA2" })
	l := ""
	for !strings.Contains(l, "!HA2|00|BOOT|") {
		l = c.line()
	}
	m, c2 := startModule(t, func(cfg *Config) { cfg.Name = "mod2"; cfg.Dir = filepath.Join(t.TempDir(), "mod2") })
	c2.waitBoot()
	if err := m.SetFault(FaultTextOnly, true); err != nil {
		t.Fatal(err)
	}
	c2.port.Write([]byte(c2.raw("01", "HELLO", nil)))
	if l := c2.line(); l != "ERROR: unknown command" {
		t.Errorf("text-only module said %q", l)
	}
}

func TestLineFaultsAreDeterministicWithASeed(t *testing.T) {
	counts := func() int {
		m, _ := startModule(t, func(cfg *Config) { cfg.Name = "x"; cfg.Dir = filepath.Join(t.TempDir(), "x"); cfg.Seed = 42 })
		m.SetLineFaults(LineFaults{Corrupt: 1e-3})
		in := make([]byte, 100000)
		out := m.shape(in)
		n := 0
		for _, b := range out {
			if b != 0 {
				n++
			}
		}
		return n
	}
	a, b := counts(), counts()
	if a != b || a < 50 || a > 200 {
		t.Errorf("corrupted bytes: %d and %d (want equal, about 100)", a, b)
	}
}

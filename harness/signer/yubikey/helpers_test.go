package yubikey

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey/sim"
)

// The tests drive the virtual YubiKey (package sim) through piv-go, the
// real libpcsclite, the real pcscd and vsmartcard's vpcd driver. They use
// vpcd's second slot (port 35964, reader "Virtual PCD 00 01") so that they
// can run beside the emulator's own tests on the first slot, and run
// sequentially: one card sits in the reader for the whole test binary (a
// plug costs a vpcd poll cycle or more), and each test leaves it as it
// found it.
var (
	vpcdAddr   = flag.String("yubikey.vpcd", "127.0.0.1:35964", "vpcd address the virtual YubiKey plugs into")
	readerName = flag.String("yubikey.reader", "Virtual PCD 00 01", "PC/SC reader name of that vpcd slot")
)

const (
	stationSerial = 20250001
	stationPIN    = "7315946" // 7 characters: not the default
	defaultPUK    = "12345678"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// One card per vpcd slot across every test binary running at once (the specs use slots too).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	release, err := sim.LockSlot(ctx, *vpcdAddr)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	release()
	if st != nil {
		st.teardown()
	}
	os.Exit(code)
}

var (
	pcscdOnce sync.Once
	pcscdErr  error
)

// requirePCSCD skips the test when pcscd with the vpcd driver cannot be
// reached; when pcscd is installed but not running it is started (as CI
// does, as root).
func requirePCSCD(t testing.TB) {
	t.Helper()
	pcscdOnce.Do(func() { pcscdErr = ensurePCSCD(*vpcdAddr) })
	if pcscdErr != nil {
		t.Skipf("skipping: cannot reach pcscd with the vsmartcard vpcd driver: %v "+
			"(install pcscd and vsmartcard-vpcd, and run `pcscd` as root)", pcscdErr)
	}
}

func ensurePCSCD(addr string) error {
	if listening(addr) {
		return nil
	}
	if exec.Command("pgrep", "-x", "pcscd").Run() == nil {
		return fmt.Errorf("pcscd runs but nothing listens on %s (no /etc/reader.conf.d/vpcd?)", addr)
	}
	path, err := exec.LookPath("pcscd")
	if err != nil {
		return fmt.Errorf("pcscd is not installed: %w", err)
	}
	if out, err := exec.Command(path).CombinedOutput(); err != nil {
		return fmt.Errorf("starting pcscd: %w: %s", err, bytes.TrimSpace(out))
	}
	for range 100 {
		if listening(addr) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("started pcscd, but nothing listens on %s", addr)
}

// vpcdHint explains the one known way a vpcd slot stops taking cards:
// vpcd keeps its slots in one table indexed by slot number for the whole
// driver library, so a second reader.conf entry with libifdvpcd.so
// overwrites the first one's slots, whose ports are then never polled.
func vpcdHint() string {
	entries, _ := filepath.Glob("/etc/reader.conf.d/*")
	var vpcd []string
	for _, e := range entries {
		if b, err := os.ReadFile(e); err == nil && bytes.Contains(b, []byte("libifdvpcd")) {
			vpcd = append(vpcd, e)
		}
	}
	if len(vpcd) < 2 {
		return ""
	}
	return fmt.Sprintf(" (hint: %d reader.conf entries use the vpcd driver (%s); vpcd's slot table is shared by all of them "+
		"(ctx[Lun & 0xffff] in ifd-vpcd.c), so only the last entry's ports are polled: use one vpcd entry, or -yubikey.vpcd/-yubikey.reader for a polled slot)",
		len(vpcd), strings.Join(vpcd, ", "))
}

// listening looks for vpcd's listening socket without connecting to it (a
// connection would look like a card to vpcd).
func listening(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	out, err := exec.Command("ss", "-Hltn", "sport = :"+port).Output()
	return err == nil && len(bytes.TrimSpace(out)) > 0
}

// station is the virtual YubiKey of a factory station, as the fixture
// prepares it:
//
//	9c  DAK generated on the card by InitDAK (PIN once, touch never), its
//	    CSR signed by a test root, certificate stored by ImportDAKCertificate
//	9a  empty
//	9d  generated key, certificate for another key (mismatch)
//	9e  generated key, no certificate
//	82  imported key with its certificate (not attestable)
//	83  generated key, PIN policy always, with its certificate
type station struct {
	dir     string
	card    *sim.Card
	plug    *sim.Plugged
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	dak     *x509.Certificate // imported into 9c
	init    *InitResult
	pinFile string // stationPIN + "\n", mode 0600
	mgmtKey []byte
}

var (
	st      *station
	stErr   error
	stMu    sync.Mutex
	stTried bool
)

// getStation returns the station card, plugged in and ready, setting it up
// on first use.
func getStation(t testing.TB) *station {
	t.Helper()
	requirePCSCD(t)
	stMu.Lock()
	defer stMu.Unlock()
	if !stTried {
		stTried = true
		st, stErr = newStation()
	}
	if stErr != nil {
		t.Fatalf("setting up the virtual YubiKey station: %v", stErr)
	}
	return st
}

func (s *station) teardown() {
	if s.plug != nil {
		_ = s.plug.Close()
	}
	_ = os.RemoveAll(s.dir)
}

// admin is an Admin that only looks at the test reader.
func (s *station) admin() *Admin {
	return &Admin{Reader: *readerName, AttestationRoots: []*x509.Certificate{s.card.AttestationRoot()}}
}

// config is an Open configuration for slot with the station's PIN file.
func (s *station) config(slot piv.Slot) Config {
	return Config{Serial: stationSerial, Slot: slot, Reader: *readerName, PINFile: s.pinFile, StateDir: s.stateDir()}
}

// stateDir is where the station's Opens remember a wrong PIN (restorePIN forgets it).
func (s *station) stateDir() string {
	return filepath.Join(s.dir, "state")
}

func newStation() (_ *station, err error) {
	s := &station{mgmtKey: piv.DefaultManagementKey}
	if s.dir, err = os.MkdirTemp("", "hilbench-yubikey-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.teardown()
		}
	}()
	s.card, err = sim.Open(filepath.Join(s.dir, "yubikey.json"), sim.Options{Serial: stationSerial})
	if err != nil {
		return nil, err
	}
	// Bound the plug (vpcd accepts the card only when pcscd polls the
	// slot; a slot nobody polls would keep the dial waiting for minutes),
	// but not the card's life.
	ctx, cancel := context.WithCancel(context.Background())
	bound := time.AfterFunc(60*time.Second, cancel)
	s.plug, err = sim.Plug(ctx, *vpcdAddr, s.card)
	if err == nil {
		err = s.waitReady()
	}
	if !bound.Stop() || err != nil {
		return nil, fmt.Errorf("plugging the virtual YubiKey into vpcd at %s (reader %q): %w%s", *vpcdAddr, *readerName, err, vpcdHint())
	}
	s.pinFile = filepath.Join(s.dir, "pin")
	if err := os.WriteFile(s.pinFile, []byte(stationPIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	now := time.Now()
	s.root, err = issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "hilbench test DAK root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(20, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &s.rootKey.PublicKey, s.rootKey)
	if err != nil {
		return nil, err
	}

	// Independent setup with piv-go: the PIN and the other slots.
	yk, err := openPIV()
	if err != nil {
		return nil, err
	}
	if err := setupSlots(s, yk); err != nil {
		_ = yk.Close()
		return nil, err
	}
	if err := yk.Close(); err != nil {
		return nil, err
	}

	// The DAK, as a self-managed station makes it (the ACK YubiKey guide).
	adm := s.admin()
	s.init, err = adm.InitDAK(context.Background(), stationSerial, InitOptions{
		ManagementKey: s.mgmtKey, PIN: stationPIN,
		PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever,
		Subject:         pkix.Name{CommonName: "hilbench station DAK", Organization: []string{"hilbench test"}},
		CSRFile:         filepath.Join(s.dir, "dak.csr"),
		AttestationFile: filepath.Join(s.dir, "dak-attestation.pem"),
	})
	if err != nil {
		return nil, fmt.Errorf("InitDAK: %w", err)
	}
	s.dak, err = s.signCSR(s.init.CSR, now.Add(-time.Hour), now.AddDate(10, 0, 0))
	if err != nil {
		return nil, err
	}
	if _, err := adm.ImportDAKCertificate(context.Background(), stationSerial, piv.SlotSignature, s.mgmtKey, pemCert(s.dak)); err != nil {
		return nil, fmt.Errorf("ImportDAKCertificate: %w", err)
	}
	return s, nil
}

func setupSlots(s *station, yk *piv.YubiKey) error {
	if err := yk.SetPIN(piv.DefaultPIN, stationPIN); err != nil {
		return err
	}
	gen := func(slot piv.Slot, pp piv.PINPolicy) (*ecdsa.PublicKey, error) {
		pub, err := yk.GenerateKey(s.mgmtKey, slot, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: pp, TouchPolicy: piv.TouchPolicyNever})
		if err != nil {
			return nil, err
		}
		return pub.(*ecdsa.PublicKey), nil
	}
	now := time.Now()
	valid := func(pub *ecdsa.PublicKey, cn string) (*x509.Certificate, error) {
		return issue(dakTemplate(cn, now.Add(-time.Hour), now.AddDate(5, 0, 0)), s.root, pub, s.rootKey)
	}
	// 9d: the certificate certifies another key.
	if _, err := gen(piv.SlotKeyManagement, piv.PINPolicyOnce); err != nil {
		return err
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := valid(&other.PublicKey, "mismatched DAK")
	if err != nil {
		return err
	}
	if err := yk.SetCertificate(s.mgmtKey, piv.SlotKeyManagement, c); err != nil {
		return err
	}
	// 9e: a key, no certificate.
	if _, err := gen(piv.SlotCardAuthentication, piv.PINPolicyOnce); err != nil {
		return err
	}
	// 82: an imported key.
	s82, _ := piv.RetiredKeyManagementSlot(0x82)
	imp, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := yk.SetPrivateKeyInsecure(s.mgmtKey, s82, imp, piv.Key{PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		return err
	}
	if c, err = valid(&imp.PublicKey, "imported DAK"); err != nil {
		return err
	}
	if err := yk.SetCertificate(s.mgmtKey, s82, c); err != nil {
		return err
	}
	// 83: PIN policy always.
	s83, _ := piv.RetiredKeyManagementSlot(0x83)
	pub, err := gen(s83, piv.PINPolicyAlways)
	if err != nil {
		return err
	}
	if c, err = valid(pub, "PIN-always DAK"); err != nil {
		return err
	}
	return yk.SetCertificate(s.mgmtKey, s83, c)
}

// dakTemplate is a DAK certificate as the AVS console issues one: a CA that
// signs device certificates only.
func dakTemplate(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn, Organization: []string{"hilbench test"}},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
}

// signCSR issues a DAK certificate for csr with the test root.
func (s *station) signCSR(csr *x509.CertificateRequest, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	tmpl := dakTemplate(csr.Subject.CommonName, notBefore, notAfter)
	tmpl.Subject = csr.Subject
	return issue(tmpl, s.root, csr.PublicKey, s.rootKey)
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = sn.Add(sn, big.NewInt(1))
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// waitReady waits until pcscd has powered the card: a readiness wait for a
// polling daemon, not a timing assertion.
func (s *station) waitReady() error {
	select {
	case <-s.plug.Ready():
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("pcscd did not power the virtual YubiKey within 60s (transport: %v)", s.plug.Err())
	}
}

// replug puts the card back (after a test unplugged it) and waits for it.
func (s *station) replug(t *testing.T) {
	t.Helper()
	if err := s.plug.Replug(); err != nil {
		t.Fatalf("Replug: %v", err)
	}
	if err := s.waitReady(); err != nil {
		t.Fatal(err)
	}
}

// openPIV opens the test reader with piv-go directly (the tests' own,
// independent access to the card), retrying while pcscd notices the card.
func openPIV() (*piv.YubiKey, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		yk, err := piv.Open(*readerName)
		if err == nil {
			return yk, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withPIV runs f with a piv-go connection to the station card.
func withPIV(t *testing.T, f func(yk *piv.YubiKey)) {
	t.Helper()
	yk, err := openPIV()
	if err != nil {
		t.Fatalf("piv.Open(%q): %v", *readerName, err)
	}
	defer yk.Close()
	f(yk)
}

// retries returns the card's PIN and PUK counters, read from the emulator
// itself rather than through the code under test.
func (s *station) retries() (pin, puk int) { return s.card.Retries() }

// wantRetries fails the test unless the counters are as expected.
func (s *station) wantRetries(t *testing.T, pin, puk int) {
	t.Helper()
	if gotPIN, gotPUK := s.retries(); gotPIN != pin || gotPUK != puk {
		t.Fatalf("card retry counters: PIN %d, PUK %d; want %d, %d", gotPIN, gotPUK, pin, puk)
	}
}

// changePIN changes the PIN with a CHANGE REFERENCE DATA command sent
// straight to the emulator (SP 800-73-4 Part 2, 3.2.2), bypassing pcscd.
func (s *station) changePIN(t *testing.T, oldPIN, newPIN string) {
	t.Helper()
	pad := func(p string) []byte {
		b := bytes.Repeat([]byte{0xFF}, 8)
		copy(b, p)
		return b
	}
	apdu := append([]byte{0x00, 0x24, 0x00, 0x80, 0x10}, append(pad(oldPIN), pad(newPIN)...)...)
	if resp := s.card.APDU(apdu); !bytes.Equal(resp, []byte{0x90, 0x00}) {
		t.Fatalf("CHANGE REFERENCE DATA: % X", resp)
	}
}

// writePINFile writes content to a new file with mode.
func writePINFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// open opens with cfg, failing the test on error, and closes at the end.
func open(t *testing.T, cfg Config) *YubiKey {
	t.Helper()
	k, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return k
}

// run runs a command and returns its stdout; failure ends the test.
func run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("skipping: %s is not installed: %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// mustIs fails unless errors.Is(err, target).
func mustIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v; want one matching %v", err, target)
	}
}

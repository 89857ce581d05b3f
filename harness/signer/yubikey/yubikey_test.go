package yubikey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/fixtures"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/yubikey/sim"
)

func sign(t *testing.T, k *YubiKey, msg string) []byte {
	t.Helper()
	d := sha256.Sum256([]byte(msg))
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(k.Certificate().PublicKey.(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("signature does not verify with the DAK certificate's key")
	}
	return sig
}

func TestOpenSignsWithPINFileEndingInNewline(t *testing.T) {
	s := getStation(t)
	k := open(t, s.config(piv.Slot{})) // zero Slot: 9c
	if k.Slot() != piv.SlotSignature || k.Serial() != stationSerial {
		t.Errorf("Slot, Serial = %v, %d", k.Slot(), k.Serial())
	}
	if !k.Certificate().Equal(s.dak) {
		t.Errorf("Certificate() is not the DAK certificate imported into 9c")
	}
	sign(t, k, "device certificate TBS")
	if err := signer.CheckChain(k, time.Now()); err != nil {
		t.Errorf("CheckChain: %v", err)
	}
	if n := k.guard.verifies; n != 1 {
		t.Errorf("VERIFY sent %d times, want once", n)
	}
	s.wantRetries(t, 3, 3)

	desc := k.Description()
	for _, want := range []string{"yubikey", fmt.Sprint(stationSerial), "slot 9c", "CN=hilbench station DAK", "expires " + s.dak.NotAfter.UTC().Format("2006-01-02"), "PIN policy once"} {
		if !strings.Contains(desc, want) {
			t.Errorf("Description() = %q; want it to contain %q", desc, want)
		}
	}
	for _, out := range []string{desc, fmt.Sprintf("%v %+v %#v %s", k, k, k, k), fmt.Sprintf("%+v %#v", *k.guard, *k.guard)} {
		if strings.Contains(out, stationPIN) {
			t.Errorf("the PIN shows in %q", out)
		}
	}
}

// The signer is safe for concurrent use: signatures are made one at a
// time on the exclusive card.
func TestConcurrentSigns(t *testing.T) {
	s := getStation(t)
	k := open(t, s.config(piv.SlotSignature))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
				sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
					err = errors.New("bad signature")
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A device chain issued by pki.Issuer with the YubiKey as its Signer
// passes `openssl verify`, the device key coming from a CSR openssl made.
func TestIssuedChainPassesOpenSSLVerify(t *testing.T) {
	s := getStation(t)
	k := open(t, s.config(piv.SlotSignature))
	dir := t.TempDir()
	conf := filepath.Join(dir, "device.conf")
	if err := os.WriteFile(conf, fixtures.DeviceConf, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "openssl", "req", "-new", "-config", conf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", filepath.Join(dir, "device.key"), "-out", filepath.Join(dir, "device.csr"))
	csrPEM, err := os.ReadFile(filepath.Join(dir, "device.csr"))
	if err != nil {
		t.Fatal(err)
	}
	profile, err := pki.ParseProfile(conf, fixtures.DeviceConf, pki.ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chain := k.Chain()
	issuer := &pki.Issuer{Profile: profile, Signer: k, CA: chain[0], Intermediates: chain[1:]}
	issued, err := issuer.Issue(csrPEM)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if err := pki.VerifyChain(issued.Chain, []*x509.Certificate{s.root}, time.Now()); err != nil {
		t.Errorf("VerifyChain: %v", err)
	}
	files := map[string][]byte{
		"root.pem":   pemCert(s.root),
		"dak.pem":    pemCert(chain[0]),
		"device.pem": pemCert(issued.Certificate),
		"chain.pem":  issued.ChainPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, nil, "openssl", "verify", "-x509_strict", "-CAfile", filepath.Join(dir, "root.pem"),
		"-untrusted", filepath.Join(dir, "dak.pem"), filepath.Join(dir, "device.pem"))
	if !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify: %s", out)
	}
}

// PIN files are checked before the key is touched: the retry counter does
// not move, and the error never shows the PIN.
func TestPINFileRefusedBeforeTouchingTheKey(t *testing.T) {
	s := getStation(t)
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    error
	}{
		{"two newlines", stationPIN + "\n\n", 0o600, ErrPINFile},
		{"5 characters", "73159\n", 0o600, ErrPINFile},
		{"9 characters", "731594612\n", 0o600, ErrPINFile},
		{"trailing space", stationPIN + " \n", 0o600, ErrPINFile},
		{"empty", "", 0o600, ErrPINFile},
		{"readable by group", stationPIN + "\n", 0o640, ErrInsecurePINFile},
		{"readable by others", stationPIN + "\n", 0o604, ErrInsecurePINFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.config(piv.SlotSignature)
			cfg.PINFile = writePINFile(t, tc.content, tc.mode)
			_, err := Open(context.Background(), cfg)
			mustIs(t, err, tc.want)
			var pe *PINFileError
			if !errors.As(err, &pe) || pe.Path != cfg.PINFile {
				t.Errorf("error %v is not a *PINFileError for %s", err, cfg.PINFile)
			}
			if strings.Contains(err.Error(), "73159") {
				t.Errorf("the error shows (part of) the PIN: %v", err)
			}
			s.wantRetries(t, 3, 3)
		})
	}
	// A missing PIN file, also before the card.
	cfg := s.config(piv.SlotSignature)
	cfg.PINFile = filepath.Join(t.TempDir(), "nope")
	_, err := Open(context.Background(), cfg)
	mustIs(t, err, ErrPINFile)
	mustIs(t, err, os.ErrNotExist)

	// CRLF is one line end.
	cfg.PINFile = writePINFile(t, stationPIN+"\r\n", 0o600)
	k := open(t, cfg)
	sign(t, k, "crlf")
}

// A wrong PIN is tried once per Open and never again; at one retry left
// Open refuses without trying unless AllowLastRetry; the harness never
// moves the counter except by presenting the PIN once.
func TestWrongPINAndLastRetry(t *testing.T) {
	s := getStation(t)
	t.Cleanup(func() { restorePIN(t, s) })
	wrong := s.config(piv.SlotSignature)
	wrong.PINFile = writePINFile(t, "1111111\n", 0o600)

	_, err := Open(context.Background(), wrong)
	mustIs(t, err, ErrWrongPIN)
	var we *WrongPINError
	if !errors.As(err, &we) || we.Retries != 2 || we.Credential != PIN {
		t.Fatalf("Open with a wrong PIN = %v; want *WrongPINError with 2 retries left", err)
	}
	if !strings.Contains(err.Error(), "2 retries left") || strings.Contains(err.Error(), "1111111") {
		t.Errorf("error message %q", err)
	}
	s.wantRetries(t, 2, 3)

	// The same file is not tried again until it changes (TestWrongPINRememberedByFileIdentity);
	// an operator who edits it, wrongly again, costs another retry.
	touch(t, wrong.PINFile)
	_, err = Open(context.Background(), wrong)
	if !errors.As(err, &we) || we.Retries != 1 {
		t.Fatalf("second Open with a wrong PIN = %v; want 1 retry left", err)
	}
	s.wantRetries(t, 1, 3)

	// One retry left: refused without trying, wrong or right PIN alike.
	touch(t, wrong.PINFile)
	for _, cfg := range []Config{wrong, s.config(piv.SlotSignature)} {
		_, err = Open(context.Background(), cfg)
		mustIs(t, err, ErrLowRetries)
		var le *LowRetriesError
		if !errors.As(err, &le) || le.Retries != 1 || !strings.Contains(err.Error(), "allow_last_retry") {
			t.Fatalf("Open at 1 retry = %v; want *LowRetriesError naming the override", err)
		}
		s.wantRetries(t, 1, 3)
	}

	// The operator's override, with the right PIN: the counter is reset.
	cfg := s.config(piv.SlotSignature)
	cfg.AllowLastRetry = true
	k := open(t, cfg)
	sign(t, k, "after the last retry")
	s.wantRetries(t, 3, 3)
}

// After a wrong PIN, the YubiKey never presents it again, even when a
// signature needs a new VERIFY (PIN policy always).
func TestWrongPINNeverRetriedBySign(t *testing.T) {
	s := getStation(t)
	t.Cleanup(func() { restorePIN(t, s) })
	s83, _ := piv.RetiredKeyManagementSlot(0x83)
	k := open(t, s.config(s83))
	sign(t, k, "always 1")
	sign(t, k, "always 2")
	if n := k.guard.verifies; n != 3 {
		t.Errorf("PIN policy always: %d VERIFYs for Open and 2 signatures, want 3", n)
	}
	// Someone changes the PIN behind the station's back (straight into
	// the emulator: the station holds the card exclusively).
	s.changePIN(t, stationPIN, "2468024")
	d := sha256.Sum256([]byte("x"))
	_, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	var we *WrongPINError
	if !errors.As(err, &we) || we.Retries != 2 {
		t.Fatalf("Sign after the PIN changed = %v; want *WrongPINError, 2 left", err)
	}
	s.wantRetries(t, 2, 3)
	for range 3 {
		if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrWrongPIN) {
			t.Fatalf("Sign after a wrong PIN = %v; want the same ErrWrongPIN, without trying", err)
		}
	}
	s.wantRetries(t, 2, 3)
	s.changePIN(t, "2468024", stationPIN)
}

// restorePIN puts the station PIN back with the PUK (default), whatever
// the test left.
func restorePIN(t *testing.T, s *station) {
	t.Helper()
	withPIV(t, func(yk *piv.YubiKey) {
		if err := yk.Unblock(defaultPUK, stationPIN); err != nil {
			t.Errorf("restoring the PIN: %v", err)
		}
	})
	s.wantRetries(t, 3, 3)
	// The station's PIN file is right again: forget a wrong-PIN stop it caused.
	if err := os.Remove(filepath.Join(s.stateDir(), WrongPINMemoFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("forgetting the wrong PIN: %v", err)
	}
}

// A blocked PIN: Open names the PUK procedure; Unblock (with the PUK
// counter guarded) sets a new PIN, which then works.
func TestLockedKeyAndUnblock(t *testing.T) {
	s := getStation(t)
	t.Cleanup(func() { restorePIN(t, s) })
	withPIV(t, func(yk *piv.YubiKey) {
		for range 3 {
			_ = yk.VerifyPIN("0000000")
		}
	})
	s.wantRetries(t, 0, 3)

	_, err := Open(context.Background(), s.config(piv.SlotSignature))
	mustIs(t, err, ErrLocked)
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Open of a blocked key = %v; want *LockedError", err)
	}
	for _, want := range []string{"PUK", UnblockCommand, "--serial " + fmt.Sprint(stationSerial), "Amazon"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("locked error %q does not mention %q", err, want)
		}
	}
	s.wantRetries(t, 0, 3)

	adm := s.admin()
	ctx := context.Background()
	// Secrets are checked before the card: a 5-digit PIN never gets there.
	mustIs(t, adm.Unblock(ctx, stationSerial, defaultPUK, "12345"), ErrConfig)
	// Wrong PUKs count down, and at one PUK retry left Unblock refuses.
	for want := 2; want >= 1; want-- {
		err := adm.Unblock(ctx, stationSerial, "87654321", "5555555")
		var we *WrongPINError
		if !errors.As(err, &we) || we.Credential != PUK || we.Retries != want {
			t.Fatalf("Unblock with a wrong PUK = %v; want *WrongPINError for the PUK, %d left", err, want)
		}
	}
	s.wantRetries(t, 0, 1)
	err = adm.Unblock(ctx, stationSerial, defaultPUK, "5555555")
	var lr *LowRetriesError
	if !errors.As(err, &lr) || lr.Credential != PUK {
		t.Fatalf("Unblock at one PUK retry = %v; want *LowRetriesError for the PUK", err)
	}
	s.wantRetries(t, 0, 1)
	adm.AllowLastRetry = true
	if err := adm.Unblock(ctx, stationSerial, defaultPUK, "5555555"); err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	s.wantRetries(t, 3, 3)

	// The new PIN opens the DAK; the old one no longer does.
	cfg := s.config(piv.SlotSignature)
	cfg.PINFile = writePINFile(t, "5555555\n", 0o600)
	k := open(t, cfg)
	sign(t, k, "after unblock")
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := adm.ChangePIN(ctx, stationSerial, "5555555", stationPIN); err != nil {
		t.Fatalf("ChangePIN: %v", err)
	}
	err = adm.ChangePIN(ctx, stationSerial, "5555555", "6666666")
	var we *WrongPINError
	if !errors.As(err, &we) || we.Retries != 2 {
		t.Errorf("ChangePIN with a wrong old PIN = %v; want *WrongPINError, 2 left", err)
	}
}

func TestWrongSerialListsSerials(t *testing.T) {
	s := getStation(t)
	cfg := s.config(piv.SlotSignature)
	cfg.Serial = 4242
	_, err := Open(context.Background(), cfg)
	mustIs(t, err, ErrCardNotFound)
	var nf *NotFoundError
	if !errors.As(err, &nf) || len(nf.Serials()) != 1 || nf.Serials()[0] != stationSerial {
		t.Fatalf("Open(serial 4242) = %v; want *NotFoundError listing %d", err, stationSerial)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(stationSerial)) || !strings.Contains(err.Error(), "4242") {
		t.Errorf("error %q should name both serials", err)
	}
	// No serial at all is a configuration error.
	cfg.Serial = 0
	_, err = Open(context.Background(), cfg)
	mustIs(t, err, ErrConfig)
	// A reader filter nothing matches.
	cfg = s.config(piv.SlotSignature)
	cfg.Reader = "no such reader"
	_, err = Open(context.Background(), cfg)
	mustIs(t, err, ErrCardNotFound)
	s.wantRetries(t, 3, 3)

	cards, err := (&Admin{Reader: *readerName}).List(context.Background())
	if err != nil || len(cards) != 1 || cards[0].Serial != stationSerial || cards[0].Reader != *readerName {
		t.Errorf("List = %v, %v", cards, err)
	}
}

// Slot and certificate problems are found before the PIN is presented.
func TestSlotAndCertificateChecks(t *testing.T) {
	s := getStation(t)
	expiredNow := func() time.Time { return s.dak.NotAfter.Add(24 * time.Hour) }
	early := func() time.Time { return s.dak.NotBefore.Add(-24 * time.Hour) }
	for _, tc := range []struct {
		name string
		slot piv.Slot
		now  func() time.Time
		want error
	}{
		{"empty slot", piv.SlotAuthentication, nil, ErrSlotEmpty},
		{"no certificate", piv.SlotCardAuthentication, nil, ErrNoCertificate},
		{"certificate for another key", piv.SlotKeyManagement, nil, ErrKeyMismatch},
		{"expired DAK certificate", piv.SlotSignature, expiredNow, ErrExpired},
		{"DAK certificate not yet valid", piv.SlotSignature, early, signer.ErrNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.config(tc.slot)
			cfg.Now = tc.now
			_, err := Open(context.Background(), cfg)
			mustIs(t, err, tc.want)
			if !strings.Contains(err.Error(), "slot "+slotName(tc.slot)) {
				t.Errorf("error %q does not name the slot", err)
			}
			s.wantRetries(t, 3, 3)
		})
	}
	_, err := ParseSlot("9b")
	mustIs(t, err, ErrConfig)
}

func TestAttestation(t *testing.T) {
	s := getStation(t)
	cfg := s.config(piv.SlotSignature)
	cfg.Attestation = AttestationRequired
	cfg.AttestationRoots = []*x509.Certificate{s.card.AttestationRoot()}
	k := open(t, cfg)
	a := k.Attestation()
	if a == nil || a.Serial != stationSerial || a.Slot != piv.SlotSignature || a.PINPolicy != piv.PINPolicyOnce {
		t.Fatalf("Attestation() = %+v", a)
	}
	sign(t, k, "attested")
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}

	other, err := sim.GenerateCA(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s82, _ := piv.RetiredKeyManagementSlot(0x82)
	for _, tc := range []struct {
		name   string
		slot   piv.Slot
		roots  []*x509.Certificate
		reason string
	}{
		{"Yubico's roots", piv.SlotSignature, nil, "Yubico PIV attestation roots"},
		{"another root", piv.SlotSignature, []*x509.Certificate{other.Certificate}, "does not chain"},
		{"imported key", s82, []*x509.Certificate{s.card.AttestationRoot()}, "imported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.config(tc.slot)
			cfg.Attestation = AttestationRequired
			cfg.AttestationRoots = tc.roots
			_, err := Open(context.Background(), cfg)
			mustIs(t, err, ErrAttestation)
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
			s.wantRetries(t, 3, 3)
		})
	}
	cfg.Attestation = "maybe"
	_, err = Open(context.Background(), cfg)
	mustIs(t, err, ErrConfig)
	// "off" (the bench file's word) checks nothing.
	cfg = s.config(s82)
	cfg.Attestation = AttestationOff
	k = open(t, cfg)
	if k.Attestation() != nil {
		t.Errorf("Attestation() with attestation off = %+v", k.Attestation())
	}
}

// The card goes away between two signatures and comes back within the
// timeout: the next Sign waits, opens a new session (PIN guard, one VERIFY)
// and succeeds.
func TestReplugWithinTimeout(t *testing.T) {
	s := getStation(t)
	waiting := make(chan struct{}, 1)
	var events []string
	var mu sync.Mutex
	cfg := s.config(piv.SlotSignature)
	cfg.ReplugTimeout = 5 * time.Minute // generous: the test replugs as soon as Sign waits
	cfg.testHookWaiting = func() { waiting <- struct{}{} }
	cfg.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf(format, args...))
	}
	k := open(t, cfg)
	sign(t, k, "before")

	if err := s.plug.Unplug(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		sig []byte
		err error
	}
	done := make(chan result, 1)
	d := sha256.Sum256([]byte("after replug"))
	go func() {
		sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
		done <- result{sig, err}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("Sign returned (%v) without waiting for the card", r.err)
	}
	s.replug(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("Sign after replug: %v", r.err)
	}
	if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], r.sig) {
		t.Errorf("signature after replug does not verify")
	}
	if n := k.guard.verifies; n != 2 {
		t.Errorf("%d VERIFYs; want 2 (Open, and the new session after the replug)", n)
	}
	s.wantRetries(t, 3, 3)
	sign(t, k, "and after")
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || !strings.Contains(events[0], "waiting up to") || !strings.Contains(events[1], "back in") {
		t.Errorf("log events = %q", events)
	}
	for _, e := range events {
		if strings.Contains(e, stationPIN) {
			t.Errorf("log shows the PIN: %q", e)
		}
	}
}

// The card does not come back in time: a clean *ReplugError, and the
// YubiKey recovers at a later Sign once the card is back.
func TestReplugTimeout(t *testing.T) {
	s := getStation(t)
	cfg := s.config(piv.SlotSignature)
	cfg.ReplugTimeout = 300 * time.Millisecond
	k := open(t, cfg)
	sign(t, k, "before")
	if err := s.plug.Unplug(); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("while away"))
	_, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	mustIs(t, err, ErrCardGone)
	var re *ReplugError
	if !errors.As(err, &re) || re.Serial != stationSerial || re.Timeout != cfg.ReplugTimeout {
		t.Fatalf("Sign with the card away = %v; want *ReplugError", err)
	}
	if !strings.Contains(err.Error(), "did not come back within 300ms") {
		t.Errorf("error %q", err)
	}
	s.replug(t)
	k.cfg.ReplugTimeout = time.Minute // the card is back; allow pcscd a moment
	sign(t, k, "back again")
	s.wantRetries(t, 3, 3)
}

// Close resets the card: the PIN verification does not outlive the
// session, so another program cannot sign with it.
func TestCloseForgetsPINVerification(t *testing.T) {
	s := getStation(t)
	k := open(t, s.config(piv.SlotSignature))
	sign(t, k, "x")
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close = %v; want ErrClosed", err)
	}
	withPIV(t, func(yk *piv.YubiKey) {
		n, verified, err := readPINRetries(yk)
		if err != nil || verified || n != 3 {
			t.Errorf("after Close: retries %d, verified %v, %v; want an unverified session", n, verified, err)
		}
		priv, err := yk.PrivateKey(piv.SlotSignature, k.Public(), piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte("y"))
		if _, err := priv.(crypto.Signer).Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
			t.Errorf("another program signed with the DAK without the PIN after Close")
		}
		// The guard recognises piv-go's answer for a verified session.
		if err := yk.VerifyPIN(stationPIN); err != nil {
			t.Fatal(err)
		}
		if _, verified, err := readPINRetries(yk); err != nil || !verified {
			t.Errorf("readPINRetries on a verified session: verified %v, %v", verified, err)
		}
	})
	// The next Open starts from a reset card all the same.
	k = open(t, s.config(piv.SlotSignature))
	sign(t, k, "z")
	if k.guard.verifies != 1 {
		t.Errorf("%d VERIFYs, want 1", k.guard.verifies)
	}
}

func TestSignArguments(t *testing.T) {
	s := getStation(t)
	k := open(t, s.config(piv.SlotSignature))
	if _, err := k.Sign(rand.Reader, make([]byte, 20), crypto.SHA256); err == nil {
		t.Errorf("Sign accepted a 20-byte SHA-256 digest")
	}
	if _, err := k.Sign(rand.Reader, make([]byte, 32), nil); err == nil {
		t.Errorf("Sign accepted nil opts")
	}
}

// Close ends a Sign that is waiting for the card.
func TestCloseWhileWaitingForTheCard(t *testing.T) {
	s := getStation(t)
	waiting := make(chan struct{}, 1)
	cfg := s.config(piv.SlotSignature)
	cfg.ReplugTimeout = 5 * time.Minute
	cfg.testHookWaiting = func() { waiting <- struct{}{} }
	k, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.plug.Unplug(); err != nil {
		t.Fatal(err)
	}
	defer s.replug(t)
	done := make(chan error, 1)
	go func() {
		_, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
		done <- err
	}()
	<-waiting
	if err := k.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Sign ended by Close = %v; want ErrClosed", err)
	}
}

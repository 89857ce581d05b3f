package yubikey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/pki"
	"hilbench/harness/signer"
)

// The station fixture made its DAK with InitDAK (key generated on the
// card, CSR signed by it) and stored the certificate the test root issued
// with ImportDAKCertificate. Check every artifact of that round trip with
// independent judges: openssl for the CSR, yubico-piv-tool for the stored
// certificate, piv-go and the emulator's root for the attestation.
func TestInitDAKAndImportRoundTrip(t *testing.T) {
	s := getStation(t)
	r := s.init
	if r.Serial != stationSerial || r.Slot != piv.SlotSignature || r.CSR.Subject.CommonName != "hilbench station DAK" {
		t.Errorf("InitResult = %+v", r)
	}
	csrFile, err := os.ReadFile(r.CSRFile)
	if err != nil || !bytes.Equal(csrFile, r.CSRPEM) {
		t.Fatalf("CSR file: %v", err)
	}
	out := run(t, nil, "openssl", "req", "-in", r.CSRFile, "-noout", "-verify", "-subject")
	if !strings.Contains(out, "CN=hilbench station DAK") && !strings.Contains(out, "CN = hilbench station DAK") {
		t.Errorf("openssl req -subject: %s", out)
	}
	if !pki.SamePublicKey(s.dak.PublicKey, r.PublicKey) {
		t.Errorf("the imported certificate is not for the generated key")
	}

	// The attestation file: the slot's attestation, then the card's.
	attPEM, err := os.ReadFile(r.AttestationFile)
	if err != nil {
		t.Fatal(err)
	}
	att, err := pki.ParseChainPEM(attPEM)
	if err != nil || len(att) != 2 {
		t.Fatalf("attestation file: %d certificates, %v", len(att), err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.card.AttestationRoot())
	a, err := (&piv.Verifier{Roots: roots}).Verify(att[1], att[0])
	if err != nil || a.Serial != stationSerial || a.PINPolicy != piv.PINPolicyOnce || a.TouchPolicy != piv.TouchPolicyNever {
		t.Errorf("attestation: %+v, %v", a, err)
	}
	if !pki.SamePublicKey(att[0].PublicKey, r.PublicKey) {
		t.Errorf("the attestation certifies another key")
	}

	// yubico-piv-tool reads back exactly the certificate imported.
	out = run(t, nil, "yubico-piv-tool", "-r", *readerName, "-a", "read-certificate", "-s", "9c")
	certs, err := pki.ParseChainPEM([]byte(out))
	if err != nil || len(certs) != 1 || !certs[0].Equal(s.dak) {
		t.Errorf("yubico-piv-tool read-certificate -s 9c printed something else (%v):\n%s", err, out)
	}
	s.wantRetries(t, 3, 3)
}

func TestInitDAKRefusals(t *testing.T) {
	s := getStation(t)
	adm := s.admin()
	ctx := context.Background()
	dir := t.TempDir()
	base := InitOptions{
		ManagementKey: s.mgmtKey, PIN: stationPIN,
		PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever,
		Subject: pkix.Name{CommonName: "another DAK"}, CSRFile: filepath.Join(dir, "dak.csr"),
	}
	for _, tc := range []struct {
		name string
		edit func(o *InitOptions)
		want error
	}{
		{"no PIN policy", func(o *InitOptions) { o.PINPolicy = 0 }, ErrConfig},
		{"no touch policy", func(o *InitOptions) { o.TouchPolicy = 0 }, ErrConfig},
		{"no management key", func(o *InitOptions) { o.ManagementKey = nil }, ErrConfig},
		{"short PIN", func(o *InitOptions) { o.PIN = "123" }, ErrConfig},
		{"no subject", func(o *InitOptions) { o.Subject = pkix.Name{} }, ErrConfig},
		{"RSA", func(o *InitOptions) { o.Algorithm = piv.AlgorithmRSA2048 }, ErrConfig},
		{"existing CSR file", func(o *InitOptions) { o.CSRFile = s.init.CSRFile }, fs.ErrExist},
		{"slot holds a key", func(o *InitOptions) {}, ErrSlotOccupied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			_, err := adm.InitDAK(ctx, stationSerial, o)
			mustIs(t, err, tc.want)
			s.wantRetries(t, 3, 3)
		})
	}
	// Nothing replaced the DAK.
	k := open(t, s.config(piv.SlotSignature))
	if !pki.SamePublicKey(k.Public(), s.dak.PublicKey) {
		t.Fatalf("the DAK in 9c changed")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}

	// InitDAK into an empty slot (a retired one: 9a stays empty for the
	// other tests), PIN policy always, then import.
	s84, _ := piv.RetiredKeyManagementSlot(0x84)
	o := base
	o.Slot = s84
	o.Replace = true // 84 may hold the key of an earlier run (-count)
	o.PINPolicy, o.TouchPolicy = piv.PINPolicyAlways, piv.TouchPolicyCached
	r, err := adm.InitDAK(ctx, stationSerial, o)
	if err != nil {
		t.Fatalf("InitDAK into 84: %v", err)
	}
	now := time.Now()
	// Refused imports: another key's certificate, an expired one, a chain.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, err := issue(dakTemplate("other", now.Add(-time.Hour), now.AddDate(1, 0, 0)), s.root, &otherKey.PublicKey, s.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.signCSR(r.CSR, now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.signCSR(r.CSR, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pem  []byte
		want error
	}{
		{"another key", pemCert(other), ErrKeyMismatch},
		{"expired", pemCert(expired), ErrExpired},
		{"with its chain", append(pemCert(good), pemCert(s.root)...), ErrConfig},
	} {
		_, err := adm.ImportDAKCertificate(ctx, stationSerial, s84, s.mgmtKey, tc.pem)
		if !errors.Is(err, tc.want) {
			t.Errorf("import %s: %v; want %v", tc.name, err, tc.want)
		}
	}
	// Until the import, Open refuses the slot: no certificate, or the one
	// an earlier run (-count) left for the key InitDAK replaced.
	cfg := s.config(s84)
	_, err = Open(ctx, cfg)
	if !errors.Is(err, ErrNoCertificate) && !(errors.Is(err, ErrKeyMismatch) && r.StaleCertificate != nil) {
		t.Fatalf("Open before the import = %v; want ErrNoCertificate (or ErrKeyMismatch with a stale certificate)", err)
	}
	if _, err := adm.ImportDAKCertificate(ctx, stationSerial, s84, s.mgmtKey, pemCert(good)); err != nil {
		t.Fatalf("ImportDAKCertificate: %v", err)
	}
	k = open(t, cfg)
	if k.KeyInfo().PINPolicy != piv.PINPolicyAlways || k.KeyInfo().TouchPolicy != piv.TouchPolicyCached {
		t.Errorf("KeyInfo = %+v", k.KeyInfo())
	}
	sign(t, k, "84")
	sign(t, k, "84 again")
	s.wantRetries(t, 3, 3)
}

func TestStatus(t *testing.T) {
	s := getStation(t)
	adm := s.admin()
	r, err := adm.Status(context.Background(), stationSerial)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if r.Serial != stationSerial || r.Reader != *readerName || r.Version != (piv.Version{Major: 5, Minor: 4, Patch: 3}) {
		t.Errorf("Status = serial %d, reader %q, version %+v", r.Serial, r.Reader, r.Version)
	}
	if r.CountersErr != nil || r.PINRetries != 3 || r.PINTotal != 3 || r.PUKRetries != 3 || r.PUKTotal != 3 {
		t.Errorf("counters: PIN %d/%d PUK %d/%d (%v)", r.PINRetries, r.PINTotal, r.PUKRetries, r.PUKTotal, r.CountersErr)
	}
	bySlot := map[string]SlotStatus{}
	for _, st := range r.Slots {
		bySlot[slotName(st.Slot)] = st
	}
	dak := bySlot["9c"]
	if dak.Key == nil || dak.Certificate == nil || !dak.KeyMatches || dak.Attestation == nil || dak.AttestationErr != nil {
		t.Errorf("slot 9c: %+v", dak)
	}
	if st := bySlot["9d"]; st.Certificate == nil || st.KeyMatches {
		t.Errorf("slot 9d should show a certificate that does not match: %+v", st)
	}
	if st := bySlot["82"]; st.Key == nil || st.Key.Origin != piv.OriginImported || !errors.Is(st.AttestationErr, ErrAttestation) {
		t.Errorf("slot 82 should show an imported key failing attestation: %+v", st)
	}
	if _, ok := bySlot["95"]; ok {
		t.Errorf("unused retired slot 95 listed")
	}
	text := r.String()
	for _, want := range []string{
		fmt.Sprintf("YubiKey serial %d", stationSerial), "firmware:    5.4.3", "PIN retries: 3 of 3 left", "PUK retries: 3 of 3 left",
		"slot 9c:", "ECCP256, generated on the YubiKey, PIN policy once, touch policy never",
		"CN=hilbench station DAK", "expires " + s.dak.NotAfter.UTC().Format("2006-01-02") + " (valid), matches the key",
		"attestation: verified: generated on YubiKey " + fmt.Sprint(stationSerial),
		"slot 9d:", "DOES NOT MATCH the key", "slot 82:", "imported", "attestation: FAILED",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	s.wantRetries(t, 3, 3)
	t.Logf("hil yubikey status:\n%s", text)

	// A blocked PIN shows as such.
	withPIV(t, func(yk *piv.YubiKey) {
		for range 3 {
			_ = yk.VerifyPIN("0000000")
		}
	})
	t.Cleanup(func() { restorePIN(t, s) })
	r, err = adm.Status(context.Background(), stationSerial)
	if err != nil {
		t.Fatal(err)
	}
	if r.PINRetries != 0 || !strings.Contains(r.String(), "BLOCKED") || !strings.Contains(r.String(), UnblockCommand) {
		t.Errorf("status of a blocked key:\n%s", r)
	}
	_, err = adm.Status(context.Background(), 4242)
	mustIs(t, err, ErrCardNotFound)
}

func TestSetRetriesAndChangePUK(t *testing.T) {
	s := getStation(t)
	adm := s.admin()
	ctx := context.Background()
	mustIs(t, adm.SetRetries(ctx, stationSerial, s.mgmtKey, stationPIN, 0, 3), ErrConfig)
	if err := adm.SetRetries(ctx, stationSerial, s.mgmtKey, stationPIN, 5, 4); err != nil {
		t.Fatalf("SetRetries: %v", err)
	}
	s.wantRetries(t, 5, 4)
	// SET PIN RETRIES resets the PIN and PUK to their defaults.
	if err := adm.ChangePIN(ctx, stationSerial, piv.DefaultPIN, stationPIN); err != nil {
		t.Fatalf("ChangePIN after SetRetries: %v", err)
	}
	if err := adm.ChangePUK(ctx, stationSerial, defaultPUK, "86427531"); err != nil {
		t.Fatalf("ChangePUK: %v", err)
	}
	err := adm.ChangePUK(ctx, stationSerial, defaultPUK, "86427531")
	var we *WrongPINError
	if !errors.As(err, &we) || we.Credential != PUK || we.Retries != 3 {
		t.Errorf("ChangePUK with the old PUK = %v; want *WrongPINError for the PUK, 3 left", err)
	}
	if err := adm.ChangePUK(ctx, stationSerial, "86427531", defaultPUK); err != nil {
		t.Fatalf("ChangePUK back: %v", err)
	}
	if err := adm.SetRetries(ctx, stationSerial, s.mgmtKey, stationPIN, 3, 3); err != nil {
		t.Fatalf("SetRetries back: %v", err)
	}
	if err := adm.ChangePIN(ctx, stationSerial, piv.DefaultPIN, stationPIN); err != nil {
		t.Fatalf("ChangePIN: %v", err)
	}
	s.wantRetries(t, 3, 3)
	k := open(t, s.config(piv.SlotSignature))
	sign(t, k, "after SetRetries")
}

func TestParsePINFile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" = refused
	}{
		{"123456", "123456"},
		{"123456\n", "123456"},
		{"12345678\r\n", "12345678"},
		{"abc!@#x\n", "abc!@#x"},
		{"123456\n\n", ""},
		{"123456\r", ""},
		{"\n123456", ""},
		{"12345\n", ""},
		{"123456789\n", ""},
		{"1234 56\n", ""},
		{"123456\x00\n", ""},
		{"12345é\n", ""},
		{"", ""},
		{"\n", ""},
	} {
		got, err := parsePINFile([]byte(tc.in))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("parsePINFile(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil && strings.TrimSpace(tc.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
			t.Errorf("parsePINFile(%q) error shows the PIN: %v", tc.in, err)
		}
	}
	if err := ValidatePIN("1234567"); err != nil {
		t.Errorf("ValidatePIN: %v", err)
	}
	mustIs(t, ValidatePIN("1234567890"), ErrConfig)
	sec := newSecret("7315946")
	if out := fmt.Sprintf("%v %s %+v %#v %q %x", sec, sec, sec, sec, sec, sec); strings.Contains(out, "7315946") {
		t.Errorf("secret printed: %s", out)
	}
}

func TestParsePolicies(t *testing.T) {
	for _, s := range []string{"never", "once", "always"} {
		p, err := ParsePINPolicy(s)
		if err != nil || pinPolicyName(p) != s {
			t.Errorf("ParsePINPolicy(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"never", "always", "cached"} {
		p, err := ParseTouchPolicy(s)
		if err != nil || touchPolicyName(p) != s {
			t.Errorf("ParseTouchPolicy(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "default", "Once"} {
		if _, err := ParsePINPolicy(s); !errors.Is(err, ErrConfig) {
			t.Errorf("ParsePINPolicy(%q) = %v", s, err)
		}
	}
	for name, want := range map[string]piv.Slot{"9c": piv.SlotSignature, "9a": piv.SlotAuthentication, "9d": piv.SlotKeyManagement, "9e": piv.SlotCardAuthentication} {
		if got, err := ParseSlot(name); err != nil || got != want {
			t.Errorf("ParseSlot(%q) = %v, %v", name, got, err)
		}
	}
	if got, err := ParseSlot("95"); err != nil || got.Key != 0x95 {
		t.Errorf("ParseSlot(95) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "9", "f9", "9b", "80", "9c0", "zz"} {
		if _, err := ParseSlot(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseSlot(%q) = %v", bad, err)
		}
	}
	var _ signer.Signer = (*YubiKey)(nil)
}

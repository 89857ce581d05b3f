package sim_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey/sim"
)

// These tests drive the emulator with piv-go v2.6.0 through libpcsclite,
// pcscd and vpcd, exactly as the harness drives a real YubiKey.

func TestPIVGoIdentity(t *testing.T) {
	tc := plugNew(t, sim.Options{Serial: 12345678, FormFactor: sim.FormFactorUSBCNano})

	cards, err := piv.Cards()
	if err != nil {
		t.Fatalf("piv.Cards: %v", err)
	}
	if !slices.Contains(cards, *readerName) {
		t.Fatalf("piv.Cards() = %q, want it to list %q", cards, *readerName)
	}
	yk := openYK(t)
	if got, want := yk.Version(), (piv.Version{Major: 5, Minor: 4, Patch: 3}); got != want {
		t.Errorf("Version() = %+v, want %+v", got, want)
	}
	serial, err := yk.Serial()
	if err != nil {
		t.Fatalf("Serial: %v", err)
	}
	if serial != 12345678 || serial != tc.card.Serial() {
		t.Errorf("Serial() = %d, want 12345678", serial)
	}
	ff, err := yk.FormFactor()
	if err != nil {
		t.Fatalf("FormFactor: %v", err)
	}
	if ff != piv.FormfactorUSBCNano {
		t.Errorf("FormFactor() = %v, want %v", ff, piv.Formfactor(piv.FormfactorUSBCNano))
	}
	// The factory attestation certificate chains to the card's root.
	att, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatalf("AttestationCertificate: %v", err)
	}
	if err := att.CheckSignatureFrom(tc.card.AttestationRoot()); err != nil {
		t.Errorf("attestation certificate not signed by AttestationRoot(): %v", err)
	}
}

func TestPIVGoPIN(t *testing.T) {
	tc := plugNew(t, sim.Options{})
	yk := openYK(t)

	if n, err := yk.Retries(); err != nil || n != 3 {
		t.Fatalf("Retries() = %d, %v; want 3", n, err)
	}
	for want := 2; want >= 1; want-- {
		err := yk.VerifyPIN("000000")
		e, ok := authErr(err)
		if !ok || e.Retries != want {
			t.Fatalf("VerifyPIN(wrong) = %v, want AuthErr{%d}", err, want)
		}
		if n, err := yk.Retries(); err != nil || n != want {
			t.Fatalf("Retries() = %d, %v; want %d", n, err, want)
		}
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("VerifyPIN(right): %v", err)
	}
	// Verified in this session: the empty VERIFY answers 9000, which piv-go
	// reports as an error from Retries.
	if _, err := yk.Retries(); err == nil {
		t.Errorf("Retries() after a successful VERIFY: want piv-go's 'expected error code' error")
	}
	if pin, _ := tc.card.Retries(); pin != 3 {
		t.Errorf("PIN retries = %d after a right PIN, want 3 (counter reset)", pin)
	}

	// Block the PIN: three wrong tries, then 6983 even for the right PIN.
	for range 3 {
		_ = yk.VerifyPIN("999999")
	}
	err := yk.VerifyPIN(piv.DefaultPIN)
	if e, ok := authErr(err); !ok || e.Retries != 0 {
		t.Fatalf("VerifyPIN on a blocked PIN = %v, want AuthErr{0}", err)
	}
	if err == nil || !containsStatus(err, "6983") {
		t.Errorf("VerifyPIN on a blocked PIN = %v, want status 6983", err)
	}

	// Unblock with the PUK: a wrong PUK counts down, the right one sets a
	// new PIN.
	if err := yk.Unblock("00000000", "654321"); err == nil {
		t.Fatalf("Unblock with a wrong PUK succeeded")
	} else if e, ok := authErr(err); !ok || e.Retries != 2 {
		t.Fatalf("Unblock(wrong PUK) = %v, want AuthErr{2}", err)
	}
	if err := yk.Unblock(piv.DefaultPUK, "654321"); err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	if err := yk.VerifyPIN("654321"); err != nil {
		t.Fatalf("VerifyPIN(new PIN): %v", err)
	}
	if err := yk.SetPIN("654321", piv.DefaultPIN); err != nil {
		t.Fatalf("SetPIN: %v", err)
	}
	if err := yk.SetPIN("111111", "222222"); err == nil {
		t.Errorf("SetPIN with a wrong old PIN succeeded")
	}
	if err := yk.SetPUK(piv.DefaultPUK, "87654321"); err != nil {
		t.Fatalf("SetPUK: %v", err)
	}
	if err := yk.SetPUK("87654321", piv.DefaultPUK); err != nil {
		t.Fatalf("SetPUK back: %v", err)
	}
	if err := yk.SetPIN(piv.DefaultPIN, "123"); err == nil {
		t.Errorf("SetPIN to a 3-digit PIN succeeded, want 6A80")
	}
}

// containsStatus reports whether piv-go's error names status word sw.
func containsStatus(err error, sw string) bool {
	return strings.Contains(err.Error(), "smart card error "+sw)
}

func TestPIVGoGenerateSignAttest(t *testing.T) {
	tc := plugNew(t, sim.Options{Serial: 7654321})
	yk := openYK(t)

	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm:   piv.AlgorithmEC256,
		PINPolicy:   piv.PINPolicyOnce,
		TouchPolicy: piv.TouchPolicyNever,
	})
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	ecPub, ok := pub.(*ecdsa.PublicKey)
	if !ok || ecPub.Curve != elliptic.P256() {
		t.Fatalf("GenerateKey returned %T, want a P-256 key", pub)
	}

	// Without a PIN the card refuses (PIN policy once, not verified).
	priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		t.Fatalf("PrivateKey: %v", err)
	}
	digest := sha256.Sum256([]byte("device certificate TBS"))
	if _, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
		t.Fatalf("Sign without PIN succeeded on a PIN-once slot")
	}

	priv, err = yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatalf("PrivateKey: %v", err)
	}
	signer := priv.(crypto.Signer)
	for i := range 3 {
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign #%d: %v", i, err)
		}
		if !ecdsa.VerifyASN1(ecPub, digest[:], sig) {
			t.Fatalf("signature #%d does not verify with the generated public key", i)
		}
	}

	info, err := yk.KeyInfo(piv.SlotSignature)
	if err != nil {
		t.Fatalf("KeyInfo: %v", err)
	}
	if info.Algorithm != piv.AlgorithmEC256 || info.PINPolicy != piv.PINPolicyOnce ||
		info.TouchPolicy != piv.TouchPolicyNever || info.Origin != piv.OriginGenerated {
		t.Errorf("KeyInfo = %+v", info)
	}
	if pk, ok := info.PublicKey.(*ecdsa.PublicKey); !ok || !pk.Equal(ecPub) {
		t.Errorf("KeyInfo public key differs from the generated one")
	}

	// Certificate round trip (long enough to need chaining and GET RESPONSE).
	cert := selfSigned(t, ecPub, signer, 40)
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert); err != nil {
		t.Fatalf("SetCertificate: %v", err)
	}
	got, err := yk.Certificate(piv.SlotSignature)
	if err != nil {
		t.Fatalf("Certificate: %v", err)
	}
	if !got.Equal(cert) {
		t.Errorf("Certificate() differs from the one stored")
	}
	if _, err := yk.Certificate(piv.SlotAuthentication); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("Certificate(9a) on an empty slot = %v, want ErrNotFound", err)
	}

	// Attestation verifies against the card's root and reports the policy.
	slotCert, err := yk.Attest(piv.SlotSignature)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	attCert, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatalf("AttestationCertificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tc.card.AttestationRoot())
	v := piv.Verifier{Roots: roots}
	a, err := v.Verify(attCert, slotCert)
	if err != nil {
		t.Fatalf("Verifier.Verify: %v", err)
	}
	if a.Serial != 7654321 || a.Version != (piv.Version{Major: 5, Minor: 4, Patch: 3}) ||
		a.PINPolicy != piv.PINPolicyOnce || a.TouchPolicy != piv.TouchPolicyNever ||
		a.Slot != piv.SlotSignature || a.Formfactor != piv.FormfactorUSBAKeychain {
		t.Errorf("attestation = %+v", a)
	}
	if pk, ok := slotCert.PublicKey.(*ecdsa.PublicKey); !ok || !pk.Equal(ecPub) {
		t.Errorf("attested public key differs from the generated one")
	}
	// Yubico's roots do not know this card.
	if _, err := piv.Verify(attCert, slotCert); err == nil {
		t.Errorf("piv.Verify with Yubico's roots accepted the virtual card's attestation")
	}
	if _, err := yk.Attest(piv.SlotKeyManagement); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("Attest(empty 9d) = %v, want ErrNotFound", err)
	}
}

func TestPIVGoPINPolicyAlwaysAndP384(t *testing.T) {
	plugNew(t, sim.Options{})
	yk := openYK(t)
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotAuthentication, piv.Key{
		Algorithm:   piv.AlgorithmEC384,
		PINPolicy:   piv.PINPolicyAlways,
		TouchPolicy: piv.TouchPolicyCached,
	})
	if err != nil {
		t.Fatalf("GenerateKey P-384: %v", err)
	}
	ecPub := pub.(*ecdsa.PublicKey)
	if ecPub.Curve != elliptic.P384() {
		t.Fatalf("want a P-384 key")
	}
	digest := sha512.Sum384([]byte("hello"))

	withPIN, err := yk.PrivateKey(piv.SlotAuthentication, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatalf("PrivateKey: %v", err)
	}
	for range 2 {
		sig, err := withPIN.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA384)
		if err != nil {
			t.Fatalf("Sign with PIN always: %v", err)
		}
		if !ecdsa.VerifyASN1(ecPub, digest[:], sig) {
			t.Fatalf("P-384 signature does not verify")
		}
	}
	// Each VERIFY allows one use: the session is still verified (piv-go's
	// "once" logic sees 9000 and sends no PIN), but the card refuses.
	noPIN, err := yk.PrivateKey(piv.SlotAuthentication, pub, piv.KeyAuth{PINPolicy: piv.PINPolicyOnce})
	if err != nil {
		t.Fatalf("PrivateKey: %v", err)
	}
	if _, err := noPIN.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA384); !containsStatus(err, "6982") {
		t.Fatalf("Sign on a PIN-always slot without a fresh VERIFY = %v, want 6982", err)
	}

	// ECDH on the card agrees with ECDH off the card.
	peer, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := withPIN.(*piv.ECDSAPrivateKey).SharedKey(&peer.PublicKey)
	if err != nil {
		t.Fatalf("SharedKey: %v", err)
	}
	peerECDH, _ := peer.ECDH()
	pubECDH, _ := ecPub.ECDH()
	want, err := peerECDH.ECDH(pubECDH)
	if err != nil {
		t.Fatal(err)
	}
	if string(shared) != string(want) {
		t.Errorf("card ECDH secret differs from the host's")
	}
}

func TestPIVGoManagementKeyAndRetries(t *testing.T) {
	tc := plugNew(t, sim.Options{})
	yk := openYK(t)

	// piv-go >= 5.4 sets AES-192 for a 24-byte key; the card then reports
	// AES in its 9B metadata and authenticates with 16-byte challenges.
	newKey := make([]byte, 24)
	if _, err := rand.Read(newKey); err != nil {
		t.Fatal(err)
	}
	if err := yk.SetManagementKey(newKey, newKey); err == nil {
		t.Fatalf("SetManagementKey authenticated with a wrong key")
	}
	if err := yk.SetManagementKey(piv.DefaultManagementKey, newKey); err != nil {
		t.Fatalf("SetManagementKey: %v", err)
	}
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotCardAuthentication,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever}); err == nil {
		t.Fatalf("GenerateKey with the old management key succeeded")
	}
	pub, err := yk.GenerateKey(newKey, piv.SlotCardAuthentication,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		t.Fatalf("GenerateKey with the new management key: %v", err)
	}
	// PIN policy never: no PIN involved.
	priv, err := yk.PrivateKey(piv.SlotCardAuthentication, pub, piv.KeyAuth{})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := priv.(crypto.Signer).Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign with PIN policy never: %v", err)
	}
	if err := yk.SetManagementKey(newKey, piv.DefaultManagementKey); err != nil {
		t.Fatalf("SetManagementKey back to the default: %v", err)
	}

	// PIN-protected metadata (object 5FC109) needs the PIN to read.
	mk := make([]byte, 24)
	if _, err := rand.Read(mk); err != nil {
		t.Fatal(err)
	}
	if err := yk.SetMetadata(piv.DefaultManagementKey, &piv.Metadata{ManagementKey: &mk}); err != nil {
		t.Fatalf("SetMetadata: %v", err)
	}
	m, err := yk.Metadata(piv.DefaultPIN)
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if m.ManagementKey == nil || string(*m.ManagementKey) != string(mk) {
		t.Errorf("Metadata().ManagementKey does not round-trip")
	}

	if err := yk.SetRetries(piv.DefaultManagementKey, piv.DefaultPIN, 5, 4); err != nil {
		t.Fatalf("SetRetries: %v", err)
	}
	if pin, puk := tc.card.Retries(); pin != 5 || puk != 4 {
		t.Errorf("after SetRetries(5, 4): card retries = %d, %d", pin, puk)
	}
	yk = reopen(t, yk)
	if n, err := yk.Retries(); err != nil || n != 5 {
		t.Errorf("Retries() = %d, %v; want 5", n, err)
	}
}

func TestPIVGoReset(t *testing.T) {
	tc := plugNew(t, sim.Options{})
	yk := openYK(t)
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	if err := yk.SetPIN(piv.DefaultPIN, "24682468"); err != nil {
		t.Fatalf("SetPIN: %v", err)
	}
	factory, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatal(err)
	}
	// piv-go's Reset blocks PIN and PUK with random values, then resets.
	if err := yk.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("VerifyPIN(default) after Reset: %v", err)
	}
	if _, err := yk.KeyInfo(piv.SlotSignature); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("KeyInfo(9c) after Reset = %v, want ErrNotFound", err)
	}
	after, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatalf("AttestationCertificate after Reset: %v", err)
	}
	if !after.Equal(factory) {
		t.Errorf("Reset did not keep the factory attestation certificate")
	}
	if pin, puk := tc.card.Retries(); pin != 3 || puk != 3 {
		t.Errorf("retries after Reset = %d, %d; want 3, 3", pin, puk)
	}
}

// selfSigned makes a certificate for pub signed by signer, padded with
// extra subject fields so that it exceeds one APDU.
func selfSigned(t *testing.T, pub *ecdsa.PublicKey, signer crypto.Signer, ous int) *x509.Certificate {
	t.Helper()
	name := pkix.Name{CommonName: "hilbench DAK test"}
	for i := range ous {
		name.OrganizationalUnit = append(name.OrganizationalUnit, "unit-"+big.NewInt(int64(i)).String())
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      name,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatalf("creating certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(der) < 600 {
		t.Fatalf("test certificate is only %d bytes; want one that needs chaining", len(der))
	}
	return cert
}

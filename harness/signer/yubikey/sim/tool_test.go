package sim_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey/sim"
)

// Debian's yubico-piv-tool 2.2.0 (libykpiv) as an independent client: it
// shares no code with piv-go, so what both agree on is what a YubiKey does.

// ykpiv runs yubico-piv-tool against the vpcd reader. Its stdout is
// returned; a failure ends the test with both outputs.
func ykpiv(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, errOut, err := ykpivErr(stdin, args...)
	if err != nil {
		t.Fatalf("yubico-piv-tool %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func ykpivErr(stdin []byte, args ...string) (stdout, stderr string, err error) {
	path, err := exec.LookPath("yubico-piv-tool")
	if err != nil {
		return "", "", err
	}
	cmd := exec.Command(path, append([]string{"-r", "Virtual PCD"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func requireTool(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("yubico-piv-tool"); err != nil {
		t.Skipf("skipping: yubico-piv-tool not installed (apt-get install yubico-piv-tool): %v", err)
	}
}

func TestYubicoPIVTool(t *testing.T) {
	requireTool(t)
	tc := plugNew(t, sim.Options{Serial: 23456789})

	out := ykpiv(t, nil, "-a", "version")
	if !strings.Contains(out, "5.4.3") {
		t.Errorf("version output %q does not name 5.4.3", out)
	}
	status := ykpiv(t, nil, "-a", "status")
	t.Logf("status (empty card):\n%s", status)
	for _, want := range []string{"Version:\t5.4.3", "Serial Number:\t23456789", "PIN tries left:\t3"} {
		if !strings.Contains(status, want) {
			t.Errorf("status does not contain %q", want)
		}
	}

	// PIN verification through the tool counts like through piv-go.
	if _, _, err := ykpivErr(nil, "-a", "verify-pin", "-P", "000000"); err == nil {
		t.Errorf("verify-pin with a wrong PIN succeeded")
	}
	if pin, _ := tc.card.Retries(); pin != 2 {
		t.Errorf("PIN retries after a wrong PIN through yubico-piv-tool = %d, want 2", pin)
	}
	ykpiv(t, nil, "-a", "verify-pin", "-P", sim.DefaultPIN)
	if pin, _ := tc.card.Retries(); pin != 3 {
		t.Errorf("PIN retries after the right PIN = %d, want 3", pin)
	}

	// Generate 9a with the tool (3DES management key authentication).
	pubPEM := ykpiv(t, nil, "-a", "generate", "-s", "9a", "-A", "ECCP256")
	block, _ := pem.Decode([]byte(pubPEM))
	if block == nil {
		t.Fatalf("generate printed no PEM public key:\n%s", pubPEM)
	}
	toolPub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("parsing the public key yubico-piv-tool printed: %v", err)
	}
	ecPub, ok := toolPub.(*ecdsa.PublicKey)
	if !ok || ecPub.Curve != elliptic.P256() {
		t.Fatalf("generated key is %T, want P-256", toolPub)
	}

	// A certificate for the generated key (issued by a throwaway CA: the
	// tool's selfsign-certificate action fails inside OpenSSL 3 before it
	// talks to the card), imported with the tool, then a signature made on
	// the card checked by the tool against that certificate.
	certPEM := issueFor(t, ecPub)
	ykpiv(t, certPEM, "-a", "import-certificate", "-s", "9a")
	_, errOut, err := ykpivErr(certPEM, "-a", "verify-pin", "-P", sim.DefaultPIN, "-a", "test-signature", "-s", "9a")
	if err != nil || !strings.Contains(errOut, "Successful ECDSA verification") {
		t.Errorf("yubico-piv-tool test-signature -s 9a: %v\n%s", err, errOut)
	}

	// piv-go sees what the tool did: same serial and version, the key
	// usable for signatures, the same certificate.
	yk := openYK(t)
	if serial, err := yk.Serial(); err != nil || serial != 23456789 {
		t.Errorf("piv-go Serial() = %d, %v", serial, err)
	}
	info, err := yk.KeyInfo(piv.SlotAuthentication)
	if err != nil {
		t.Fatalf("KeyInfo(9a): %v", err)
	}
	if pk, ok := info.PublicKey.(*ecdsa.PublicKey); !ok || !pk.Equal(ecPub) {
		t.Errorf("piv-go sees a different 9a public key than yubico-piv-tool generated")
	}
	if info.PINPolicy != piv.PINPolicyOnce {
		t.Errorf("9a PIN policy = %v, want the slot default (once)", info.PINPolicy)
	}
	cert, err := yk.Certificate(piv.SlotAuthentication)
	if err != nil {
		t.Fatalf("piv-go Certificate(9a): %v", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || !bytes.Equal(cb.Bytes, cert.Raw) {
		t.Errorf("piv-go reads a different 9a certificate than yubico-piv-tool imported")
	}
	priv, err := yk.PrivateKey(piv.SlotAuthentication, ecPub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("tool-generated key"))
	sig, err := priv.(crypto.Signer).Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("piv-go Sign with the tool-generated key: %v", err)
	}
	if !ecdsa.VerifyASN1(ecPub, d[:], sig) {
		t.Errorf("signature with the tool-generated key does not verify")
	}

	// And the other way round: a certificate stored by piv-go in 9c reads
	// back identical through the tool.
	pub9c, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		t.Fatalf("GenerateKey(9c): %v", err)
	}
	priv9c, err := yk.PrivateKey(piv.SlotSignature, pub9c, piv.KeyAuth{})
	if err != nil {
		t.Fatal(err)
	}
	cert9c := selfSigned(t, pub9c.(*ecdsa.PublicKey), priv9c.(crypto.Signer), 30)
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert9c); err != nil {
		t.Fatalf("SetCertificate(9c): %v", err)
	}
	if err := yk.Close(); err != nil {
		t.Fatal(err)
	}
	readPEM := ykpiv(t, nil, "-a", "read-certificate", "-s", "9c")
	rb, _ := pem.Decode([]byte(readPEM))
	if rb == nil || !bytes.Equal(rb.Bytes, cert9c.Raw) {
		t.Errorf("yubico-piv-tool read-certificate -s 9c differs from what piv-go stored:\n%s", readPEM)
	}

	status = ykpiv(t, nil, "-a", "status")
	t.Logf("status (after generate and import):\n%s", status)
	for _, slot := range []string{"Slot 9a", "Slot 9c"} {
		if !strings.Contains(status, slot) {
			t.Errorf("status does not list %s", slot)
		}
	}

	// The tool's attestation verifies against the card's root too.
	attPEM := ykpiv(t, nil, "-a", "attest", "-s", "9a")
	ab, _ := pem.Decode([]byte(attPEM))
	if ab == nil {
		t.Fatalf("attest printed no certificate:\n%s", attPEM)
	}
	slotCert, err := x509.ParseCertificate(ab.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	f9PEM := ykpiv(t, nil, "-a", "read-certificate", "-s", "f9")
	fb, _ := pem.Decode([]byte(f9PEM))
	if fb == nil {
		t.Fatalf("read-certificate -s f9 printed no certificate:\n%s", f9PEM)
	}
	f9, err := x509.ParseCertificate(fb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tc.card.AttestationRoot())
	a, err := (&piv.Verifier{Roots: roots}).Verify(f9, slotCert)
	if err != nil {
		t.Fatalf("verifying yubico-piv-tool's attestation: %v", err)
	}
	if a.Serial != 23456789 || a.Slot != piv.SlotAuthentication {
		t.Errorf("attestation = %+v", a)
	}
}

func TestYubicoPIVToolPINAndCHUID(t *testing.T) {
	requireTool(t)
	tc := plugNew(t, sim.Options{})

	// Change the PIN and PUK with the tool, use them from piv-go.
	ykpiv(t, nil, "-a", "change-pin", "-P", sim.DefaultPIN, "-N", "24682468")
	ykpiv(t, nil, "-a", "change-puk", "-P", sim.DefaultPUK, "-N", "11223344")
	yk := openYK(t)
	if err := yk.VerifyPIN("24682468"); err != nil {
		t.Fatalf("piv-go VerifyPIN(PIN set by the tool): %v", err)
	}
	if err := yk.SetPUK("11223344", sim.DefaultPUK); err != nil {
		t.Fatalf("piv-go SetPUK(PUK set by the tool): %v", err)
	}
	if err := yk.Close(); err != nil {
		t.Fatal(err)
	}

	// Block the PIN through the tool, unblock it with the PUK.
	for range 3 {
		_, _, _ = ykpivErr(nil, "-a", "verify-pin", "-P", "000000")
	}
	if pin, _ := tc.card.Retries(); pin != 0 {
		t.Fatalf("PIN retries after three wrong PINs = %d", pin)
	}
	_, errOut, err := ykpivErr(nil, "-a", "verify-pin", "-P", "24682468")
	if err == nil {
		t.Fatalf("verify-pin succeeded on a blocked PIN")
	}
	if !strings.Contains(strings.ToLower(errOut), "blocked") {
		t.Errorf("verify-pin on a blocked PIN: stderr %q does not say blocked", errOut)
	}
	ykpiv(t, nil, "-a", "unblock-pin", "-P", sim.DefaultPUK, "-N", sim.DefaultPIN)
	ykpiv(t, nil, "-a", "verify-pin", "-P", sim.DefaultPIN)

	// CHUID and CCC: absent on a new card, written by the tool, then shown.
	ykpiv(t, nil, "-a", "set-chuid", "-a", "set-ccc")
	status := ykpiv(t, nil, "-a", "status")
	t.Logf("status:\n%s", status)
	for _, want := range []string{"CHUID:", "CCC:"} {
		line := lineWith(status, want)
		if line == "" || strings.Contains(line, "No data available") {
			t.Errorf("status %s line = %q, want data", want, line)
		}
	}
}

func lineWith(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return l
		}
	}
	return ""
}

// TestYubicoPIVToolAfterReplug: a key generated by one client survives a
// replug and is what the other client reads.
func TestYubicoPIVToolAfterReplug(t *testing.T) {
	requireTool(t)
	tc := plugNew(t, sim.Options{})
	ykpiv(t, nil, "-a", "generate", "-s", "9e", "-A", "ECCP384")
	if err := tc.plug.Replug(); err != nil {
		t.Fatalf("Replug: %v", err)
	}
	waitReady(t, tc.plug)
	yk := openYK(t)
	info, err := yk.KeyInfo(piv.SlotCardAuthentication)
	if err != nil {
		t.Fatalf("KeyInfo(9e) after replug: %v", err)
	}
	if info.Algorithm != piv.AlgorithmEC384 || info.PINPolicy != piv.PINPolicyNever {
		t.Errorf("KeyInfo(9e) = %+v, want a P-384 key with the 9e default PIN policy (never)", info)
	}
}

// issueFor returns a PEM certificate for pub from a throwaway CA.
func issueFor(t *testing.T, pub *ecdsa.PublicKey) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "throwaway CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "yubico-piv-tool generated key"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

package sim_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey/sim"
)

func TestStateSurvivesUnplugAndRestart(t *testing.T) {
	tc := plugNew(t, sim.Options{Serial: 31415926})
	yk := openYK(t)
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
		piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever})
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, pub.(*ecdsa.PublicKey), priv.(crypto.Signer), 10)
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert); err != nil {
		t.Fatalf("SetCertificate: %v", err)
	}
	// Verified now (PrivateKey signed with the PIN); then one wrong PIN.
	if err := yk.VerifyPIN("000000"); err == nil {
		t.Fatalf("wrong PIN accepted")
	}
	if err := yk.Close(); err != nil {
		t.Fatal(err)
	}

	// Unplug: the card leaves the reader.
	if err := tc.plug.Unplug(); err != nil {
		t.Fatalf("Unplug: %v", err)
	}
	waitGone(t)
	if err := tc.plug.Replug(); err != nil {
		t.Fatalf("Replug: %v", err)
	}
	waitReady(t, tc.plug)

	yk = openYK(t)
	if n, err := yk.Retries(); err != nil || n != 2 {
		t.Errorf("Retries() after replug = %d, %v; want 2 (the counter persists)", n, err)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatal(err)
	}
	checkSlot9c(t, yk, pub, cert.Raw)
	if err := yk.Close(); err != nil {
		t.Fatal(err)
	}

	// Replug again: the PIN verification (volatile) is gone, the counter
	// is back at 3 (persistent).
	if err := tc.plug.Replug(); err != nil {
		t.Fatalf("Replug: %v", err)
	}
	waitReady(t, tc.plug)
	yk = openYK(t)
	if n, err := yk.Retries(); err != nil || n != 3 {
		t.Errorf("Retries() after the second replug = %d, %v; want 3 and not verified", n, err)
	}
	if err := yk.Close(); err != nil {
		t.Fatal(err)
	}

	// Process restart: a new Card from the same file.
	if err := tc.plug.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tc.plug.Replug(); !errors.Is(err, sim.ErrClosed) {
		t.Errorf("Replug after Close = %v, want ErrClosed", err)
	}
	waitGone(t)
	root := tc.card.AttestationRoot()
	c2, err := sim.Open(tc.path, sim.Options{Serial: 31415926, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Open(existing): %v", err)
	}
	if !c2.AttestationRoot().Equal(root) {
		t.Errorf("restarted card has another attestation root")
	}
	plugCard(t, c2, tc.path)
	yk = openYK(t)
	if s, err := yk.Serial(); err != nil || s != 31415926 {
		t.Errorf("Serial() after restart = %d, %v", s, err)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatal(err)
	}
	checkSlot9c(t, yk, pub, cert.Raw)

	fi, err := os.Stat(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
}

func checkSlot9c(t *testing.T, yk *piv.YubiKey, pub crypto.PublicKey, certDER []byte) {
	t.Helper()
	got, err := yk.Certificate(piv.SlotSignature)
	if err != nil {
		t.Fatalf("Certificate(9c): %v", err)
	}
	if string(got.Raw) != string(certDER) {
		t.Errorf("certificate in 9c changed")
	}
	priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("after replug"))
	sig, err := priv.(crypto.Signer).Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign(9c): %v", err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
		t.Errorf("9c signature does not verify with the key generated before")
	}
}

// TestPlugContextAndConcurrentUse: the transport ends with its context, and
// tests may use the Card directly while pcscd talks to it.
func TestPlugContextAndConcurrentUse(t *testing.T) {
	requirePCSCD(t)
	c, err := sim.New(sim.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := sim.Plug(ctx, *vpcdAddr, c)
	if err != nil {
		t.Fatalf("Plug: %v", err)
	}
	defer p.Close()
	waitReady(t, p)
	yk := openYK(t)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			_, _ = c.Retries()
			_ = c.Serial()
		}
	}()
	for range 20 {
		if _, err := yk.Serial(); err != nil {
			t.Fatalf("Serial while the card is used concurrently: %v", err)
		}
	}
	<-done
	_ = yk.Close()

	cancel()
	waitGone(t)
	if err := p.Unplug(); err != nil {
		t.Errorf("Unplug after the context ended: %v", err)
	}
	if err := p.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err() after the context ended = %v, want context.Canceled", err)
	}
}

func TestPlugWithoutVPCD(t *testing.T) {
	c, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: Plug reports it instead of hanging.
	if _, err := sim.Plug(context.Background(), "127.0.0.1:1", c); err == nil {
		t.Fatalf("Plug to a closed port succeeded")
	}
}

// TestUnplugRightAfterPlug: unplugging before pcscd has even seen the card,
// then plugging again, leaves a usable card.
func TestUnplugRightAfterPlug(t *testing.T) {
	requirePCSCD(t)
	c, err := sim.New(sim.Options{Serial: 5550001, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.Plug(context.Background(), *vpcdAddr, c)
	if err != nil {
		t.Fatalf("Plug: %v", err)
	}
	defer p.Close()
	for range 3 {
		if err := p.Unplug(); err != nil {
			t.Fatalf("Unplug: %v", err)
		}
		if err := p.Replug(); err != nil {
			t.Fatalf("Replug: %v", err)
		}
	}
	waitReady(t, p)
	yk := openYK(t)
	if s, err := yk.Serial(); err != nil || s != 5550001 {
		t.Errorf("Serial() = %d, %v", s, err)
	}
}

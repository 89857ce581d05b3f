package sim_test

import (
	"crypto"
	"crypto/des"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey/sim"
)

// BenchmarkPIVGoSignP256 measures P-256 signatures through the whole stack:
// piv-go -> libpcsclite -> pcscd -> vpcd -> emulator. It reports signatures
// per second and the p50/p99 latency of one Sign call. "pin=never" is one
// GENERAL AUTHENTICATE per signature; "pin=once" adds piv-go's empty VERIFY
// (login check) before each.
func BenchmarkPIVGoSignP256(b *testing.B) {
	for _, bc := range []struct {
		name string
		pp   piv.PINPolicy
	}{
		{"pin=never", piv.PINPolicyNever},
		{"pin=once", piv.PINPolicyOnce},
	} {
		b.Run(bc.name, func(b *testing.B) {
			plugNew(b, sim.Options{})
			yk := openYK(b)
			pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature,
				piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: bc.pp, TouchPolicy: piv.TouchPolicyNever})
			if err != nil {
				b.Fatalf("GenerateKey: %v", err)
			}
			priv, err := yk.PrivateKey(piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN, PINPolicy: bc.pp})
			if err != nil {
				b.Fatal(err)
			}
			signer := priv.(crypto.Signer)
			digest := sha256.Sum256([]byte("benchmark"))
			if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatalf("Sign: %v", err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatalf("Sign: %v", err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportLatency(b, lat, "sigs/s")
		})
	}
}

// BenchmarkCardSignP256 is the emulator alone (Card.APDU, no transport): the
// share of the end-to-end figure that is the card's own work.
func BenchmarkCardSignP256(b *testing.B) {
	c, err := sim.New(sim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	must := func(cmd []byte) []byte {
		r := c.APDU(cmd)
		if len(r) < 2 || r[len(r)-2] != 0x90 {
			b.Fatalf("APDU %x -> %x", cmd, r)
		}
		return r
	}
	must([]byte{0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08})
	authenticateDefault(b, c)
	must([]byte{0x00, 0x47, 0x00, 0x9C, 0x08, 0xAC, 0x06, 0x80, 0x01, 0x11, 0xAA, 0x01, 0x01})
	digest := sha256.Sum256([]byte("benchmark"))
	cmd := append([]byte{0x00, 0x87, 0x11, 0x9C, 0x26, 0x7C, 0x24, 0x82, 0x00, 0x81, 0x20}, digest[:]...)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		must(cmd)
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat, "sigs/s")
}

// authenticateDefault authenticates to c with the default 3DES management
// key (mutual authentication, SP 800-73-4 Part 2, Appendix A.1).
func authenticateDefault(b *testing.B, c *sim.Card) {
	b.Helper()
	key, err := hex.DecodeString(sim.DefaultManagementKeyHex)
	if err != nil {
		b.Fatal(err)
	}
	block, err := des.NewTripleDESCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	r := c.APDU([]byte{0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00})
	if len(r) != 14 {
		b.Fatalf("witness request -> %x", r)
	}
	witness := make([]byte, 8)
	block.Decrypt(witness, r[4:12])
	req := append([]byte{0x00, 0x87, 0x03, 0x9B, 0x16, 0x7C, 0x14, 0x80, 0x08}, witness...)
	req = append(req, 0x81, 0x08, 1, 2, 3, 4, 5, 6, 7, 8)
	if r := c.APDU(req); len(r) < 2 || r[len(r)-2] != 0x90 {
		b.Fatalf("authentication -> %x", r)
	}
}

func reportLatency(b *testing.B, lat []time.Duration, rate string) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	var total time.Duration
	for _, d := range lat {
		total += d
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/total.Seconds(), rate)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

package yubikey

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// BenchmarkSign measures (*YubiKey).Sign end to end: piv-go, libpcsclite,
// pcscd, vpcd, the emulator, and the signature check on the way back.
// Besides ns/op it reports signatures per second and the p50 and p99
// latency of one signature.
//
//	go test -run '^$' -bench Sign -benchtime 2000x ./harness/signer/yubikey/
func BenchmarkSign(b *testing.B) {
	s83, _ := piv.RetiredKeyManagementSlot(0x83)
	for _, bc := range []struct {
		name string
		slot piv.Slot
	}{
		{"pin-once", piv.SlotSignature}, // one VERIFY per session
		{"pin-always", s83},             // counter read + VERIFY before every signature
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := getStation(b)
			k, err := Open(context.Background(), s.config(bc.slot))
			if err != nil {
				b.Fatalf("Open: %v", err)
			}
			defer k.Close()
			d := sha256.Sum256([]byte("device certificate TBS"))
			lat := make([]time.Duration, 0, b.N)
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
					b.Fatalf("Sign: %v", err)
				}
				lat = append(lat, time.Since(t0))
			}
			total := time.Since(start)
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))].Microseconds())
			}
			b.ReportMetric(float64(len(lat))/total.Seconds(), "sig/s")
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}

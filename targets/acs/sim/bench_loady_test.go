package sim

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// BenchmarkLoadyLineRate: lrzsz's sb sends 256 KiB into loady at 921600 bps.
// Reported: image bytes per second of sb's whole run (start, wait for the
// 'C' poll, transfer, end of batch) and its share of the line rate (Baud/10
// bytes/s, 8N1); the same for the steady part (first data block on the slot
// to sb's exit); seconds per transfer.
func BenchmarkLoadyLineRate(b *testing.B) { benchLoady(b, 921600) }

// BenchmarkLoadyUnlimited is the same with Baud 0 (no line model): the cost
// of the protocol's turnarounds (pty, scheduling, sb) alone.
func BenchmarkLoadyUnlimited(b *testing.B) { benchLoady(b, 0) }

func benchLoady(b *testing.B, baud int) {
	if _, err := exec.LookPath("sb"); err != nil {
		b.Skip("lrzsz not installed")
	}
	const size = 256 << 10
	cfg := Config{
		Name: "dut1", Dir: filepath.Join(b.TempDir(), "dut1"), Profile: profilePath,
		BootDelay: -1, Baud: baud, BootloaderStrap: true,
	}
	d, err := Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c := openConsole(b, d, baud)
	if _, err := c.until(regexp.MustCompile(`HILSIM boot ROM 1\.0\r\n=> `), 10*time.Second); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "fw.img")
	var total, steady time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		img := imageOfSize("bench-"+strings.Repeat("x", i%3), size)
		if err := os.WriteFile(file, img, 0o644); err != nil {
			b.Fatal(err)
		}
		c.write("loady\r")
		if _, err := c.until(romReadyRE, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		c.buf = nil
		target := d.SlotPath(otherSlot(d.ActiveSlot()))
		b.StartTimer()
		start := time.Now()
		cmd, stderr := sbStart(b, d, file)
		// The steady rate: from the first data block on the slot to sb's
		// exit, leaving out sb's start and its wait for a 'C' poll.
		first := make(chan time.Time, 1)
		stop := make(chan struct{})
		go func() {
			for {
				if st, err := os.Stat(target); err == nil && st.Size() >= 1024 {
					first <- time.Now()
					return
				}
				select {
				case <-stop:
					first <- time.Time{}
					return
				case <-time.After(200 * time.Microsecond):
				}
			}
		}()
		if err := cmd.Wait(); err != nil {
			b.Fatalf("sb: %v\n%s", err, stderr)
		}
		end := time.Now()
		close(stop)
		t0 := <-first
		total += end.Sub(start)
		steady += end.Sub(t0)
		b.StopTimer()
		out, err := c.until(regexp.MustCompile(`=> $`), 30*time.Second)
		if err != nil || !strings.Contains(out, "installed, active") {
			b.Fatalf("loady: %q %v", out, err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	rate := float64(size) * float64(b.N) / total.Seconds()
	steadyRate := float64(size-1024) * float64(b.N) / steady.Seconds()
	b.ReportMetric(rate, "B/s")
	b.ReportMetric(steadyRate, "steady-B/s")
	if baud > 0 {
		b.ReportMetric(100*rate/float64(baud/10), "%line")
		b.ReportMetric(100*steadyRate/float64(baud/10), "steady-%line")
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/transfer")
	b.ReportMetric(0, "ns/op")
}

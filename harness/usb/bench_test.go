package usb_test

import (
	"context"
	"testing"
	"time"

	"hilbench/harness/usb"
	"hilbench/harness/usb/fakedfu"
)

// BenchmarkDFUDownload flashes 128 KiB into a fake that really takes 5 ms per 2 KiB block.
// The bound is wTransferSize / program time; bound-% is how close the host loop gets.
func BenchmarkDFUDownload(b *testing.B) {
	const ts, program = 2048, 5 * time.Millisecond
	r := newRig(b, fakedfu.Config{TransferSize: ts, ProgramTime: program, RealTime: true, ManifestationTolerant: true})
	data := image(128<<10, 30)
	var bytes int64
	var busy time.Duration
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		s, err := r.dfu.Download(context.Background(), data, usb.DownloadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bytes += s.Bytes
		busy += s.Duration
	}
	b.StopTimer()
	bound := float64(ts) / program.Seconds()
	tput := float64(bytes) / busy.Seconds()
	b.ReportMetric(tput, "bytes/s")
	b.ReportMetric(100*tput/bound, "bound-%")
	if st := r.fake.Stats(); st.EarlyPolls > 0 || len(st.Violations) > 0 {
		b.Fatalf("early polls %d, violations %q", st.EarlyPolls, st.Violations)
	}
}

package ack_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.bug.st/serial"

	"hilbench/harness/device"
	"hilbench/targets/ack"
	acksim "hilbench/targets/ack/sim"
)

// provisionSim provisions one simulated module (line rate baud, line faults f) and returns the
// wall time, the driver's line statistics and the module's own processing time.
func provisionSim(b *testing.B, st *station, baud int, f acksim.LineFaults, seed uint64) (time.Duration, ack.Stats, time.Duration) {
	dir := filepath.Join(b.TempDir(), "mod")
	m, err := acksim.Start(acksim.Config{Name: "mod", Dir: dir, Baud: baud, BootDelay: 5 * time.Millisecond, Seed: seed})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	port, err := serial.Open(m.PortPath(), &serial.Mode{BaudRate: baud})
	if err != nil {
		b.Fatal(err)
	}
	defer port.Close()
	mod := ack.New(port, ack.Config{Name: "mod", Baud: baud, Profile: st.profile}, nil)
	defer mod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := mod.Hello(ctx); err != nil {
		b.Fatal(err)
	}
	m.SetLineFaults(f)
	busy, before := m.Stats().Processing, mod.LineStats() // the HELLO above is not the provisioning's
	start := time.Now()
	if _, err := mod.Provision(ctx, st, device.Options{}); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	s := mod.LineStats()
	s.BytesSent -= before.BytesSent
	s.BytesReceived -= before.BytesReceived
	s.FramesSent -= before.FramesSent
	s.Retransmissions -= before.Retransmissions
	return el, s, m.Stats().Processing - busy
}

// BenchmarkProvision115200 is one module's provisioning against a simulator modelling 115200 baud.
// What no host can take away: the line time of the bytes exchanged plus the module's own
// processing time (the simulator measures it). The line time is both directions added: the
// protocol is stop-and-wait, a request is sent whole before the module answers and the answer
// arrives whole before the next request goes, so the two directions never carry bytes at once.
// What is left is the harness's: harness-overhead-% of the wall time.
func BenchmarkProvision115200(b *testing.B) {
	st := newStation(b)
	var wall, line, busy time.Duration
	var bytes int64
	for b.Loop() {
		el, s, dev := provisionSim(b, st, 115200, acksim.LineFaults{}, 1)
		wall += el
		busy += dev
		line += time.Duration(float64(s.BytesSent+s.BytesReceived) / 11520 * float64(time.Second))
		bytes += s.BytesSent + s.BytesReceived
	}
	n := float64(b.N)
	b.ReportMetric(wall.Seconds()/n, "provision-s")
	b.ReportMetric(line.Seconds()/n, "line-s")
	b.ReportMetric(busy.Seconds()/n, "device-s")
	b.ReportMetric(wall.Seconds()/(line+busy).Seconds(), "x-bound")
	b.ReportMetric(float64(bytes)/n, "bytes")
	b.ReportMetric(100*(wall-line-busy).Seconds()/wall.Seconds(), "harness-overhead-%")
}

// BenchmarkProvisionNoise reports retransmissions and their cost at byte error rates of 1e-4 and
// 1e-3 (split between dropped, corrupted and inserted bytes), over 20 modules each.
func BenchmarkProvisionNoise(b *testing.B) {
	st := newStation(b)
	clean, _, _ := provisionSim(b, st, 115200, acksim.LineFaults{}, 1)
	for _, rate := range []float64{1e-4, 1e-3} {
		b.Run(fmt.Sprintf("rate=%g", rate), func(b *testing.B) {
			f := acksim.LineFaults{Noise: rate * 0.3, Drop: rate * 0.3, Corrupt: rate * 0.4}
			for b.Loop() {
				var total time.Duration
				var frames, retrans int
				for i := range 20 {
					el, s, _ := provisionSim(b, st, 115200, f, uint64(i+1))
					total += el
					frames += s.FramesSent
					retrans += s.Retransmissions
				}
				b.ReportMetric(float64(retrans)/20, "retransmissions/module")
				b.ReportMetric(100*float64(retrans)/float64(frames-retrans), "retransmitted-%")
				b.ReportMetric((total / 20).Seconds(), "provision-s")
				b.ReportMetric(100*((total/20).Seconds()/clean.Seconds()-1), "time-overhead-%")
			}
		})
	}
}

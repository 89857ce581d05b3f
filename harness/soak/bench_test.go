package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSoakCycleOverhead: what the soak itself costs per target cycle (identity checks, the
// ledger's double-signature lookup and consistency check, the report) against devices that answer
// at once: the rest of a cycle's time is the device's.
func BenchmarkSoakCycleOverhead(b *testing.B) {
	f := newFixture(b, "a")
	b.ReportAllocs()
	b.ResetTimer()
	rep, err := Run(context.Background(), Config{Cycles: b.N, Seed: 1}, f.tgts)
	if err != nil || rep.Counters.Identity() != 0 {
		b.Fatalf("%v %+v", err, rep.Counters)
	}
}

// BenchmarkReportFiles: the morning report of `make soak` (1,000 cycles, 12 targets, 7 steps:
// 84,000 step times) written as soak.json, JUnit XML and the HTML page.
func BenchmarkReportFiles(b *testing.B) {
	rep := newReport(Config{Cycles: 1000, Seed: 1, Faults: []string{FaultPowerCut, FaultNoise}, NoiseRate: 1e-4}, time.Now())
	for i := range 12 {
		tr := rep.target(fmt.Sprintf("dut%d", i+1), "acs", true)
		for _, st := range []string{StepVerify, StepReboot, StepReset, StepReflash, StepPowerCycle, StepPowerCut, StepReenum} {
			for c := 1; c <= 1000; c++ {
				rep.stepRun(tr, st, c, time.Duration(100+c%900)*time.Millisecond, c%97 == 0)
			}
		}
	}
	rep.finish(time.Now())
	dir := b.TempDir()
	b.ResetTimer()
	for b.Loop() {
		if err := rep.WriteFiles(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var size int64
	for _, n := range []string{"soak.json", "soak-junit.xml", "soak.html"} {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			b.Fatal(err)
		}
		size += st.Size()
	}
	b.ReportMetric(float64(size), "report-bytes")
}

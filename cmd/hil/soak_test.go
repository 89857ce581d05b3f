package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// soakJSON is what the tests read of soak.json.
type soakJSON struct {
	Seed     uint64         `json:"seed"`
	Counters map[string]int `json:"counters"`
	Steps    []struct {
		Step     string  `json:"step"`
		Runs     int     `json:"runs"`
		Failures int     `json:"failures"`
		P50      float64 `json:"p50_ms"`
		P99      float64 `json:"p99_ms"`
	} `json:"steps"`
	Targets []struct {
		Name    string            `json:"name"`
		Cycles  int               `json:"cycles_done"`
		Stopped string            `json:"stopped"`
		Facts   map[string]string `json:"facts"`
	} `json:"targets"`
}

func readSoakJSON(t *testing.T, dir string) *soakJSON {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "soak.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r soakJSON
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("soak.json: %v", err)
	}
	return &r
}

// startHilSim runs the real `hil sim` in its own process and returns the bench file it wrote.
func startHilSim(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := hilProc(ctx, append([]string{"sim", "--dir", dir}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("hil sim ended before it wrote its bench file")
			}
			if f, ok := strings.CutPrefix(l, "bench file: "); ok {
				go func() { // keep draining its output
					for range lines {
					}
				}()
				return f
			}
		case <-deadline:
			t.Fatal("hil sim wrote no bench file within 2 minutes")
		}
	}
}

// soakCycles is the short soak's length: every step and fault of a cycle runs in each, so a few
// show the loop works; make soak runs the thousand.
const soakCycles = 4

// TestSoakShortWithHilSim: soakCycles cycles on 2 devices of a real `hil sim`, with power cuts
// (during provisioning, mid-flash and mid-reboot), 1e-4 line noise and USB re-enumeration: every
// identity survives, every step ran every cycle, and the three reports read back.
func TestSoakShortWithHilSim(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak in -short")
	}
	t.Parallel()
	dir := t.TempDir()
	benchFile := startHilSim(t, filepath.Join(dir, "sim"), "--n", "2", "--boot-delay", "50ms")
	img := filepath.Join(dir, "fw.bin")
	if out, err := hil(t, "sim", "image", "--version", "acs-sim-2.0.0", "--out", img, "--size", "8192"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out := filepath.Join(dir, "report")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"soak", "--bench", benchFile, "--cycles", fmt.Sprint(soakCycles), "--faults", "power_cut,noise,reenumerate",
		"--seed", "20261206", "--image", img, "--expect-version", "acs-sim-2.0.0", "--read-timeout", "20s",
		"--progress-every", "2", "--out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("soak: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if n := strings.Count(stderr.String(), "soak: cycle "); n != soakCycles/2 {
		t.Errorf("progress: %d lines, want %d (every 2 of %d cycles):\n%s", n, soakCycles/2, soakCycles, stderr.String())
	}
	r := readSoakJSON(t, out)
	if r.Seed != 20261206 {
		t.Errorf("seed %d in the report", r.Seed)
	}
	for _, k := range []string{"torn_chains", "changed_chains", "double_signatures", "ledger_inconsistencies", "provision_failures"} {
		if v, ok := r.Counters[k]; !ok || v != 0 {
			t.Errorf("counter %s = %d (present %v), want 0", k, v, ok)
		}
	}
	runs := map[string]int{}
	for _, s := range r.Steps {
		runs[s.Step] = s.Runs
		if s.Runs > s.Failures && (s.P50 <= 0 || s.P99 < s.P50) {
			t.Errorf("step %s: p50 %v, p99 %v", s.Step, s.P50, s.P99)
		}
	}
	for _, step := range []string{"verify", "reboot", "factory_reset", "reflash", "power_cycle", "power_cut", "reenumerate"} {
		if runs[step] != 2*soakCycles {
			t.Errorf("step %s ran %d times, want %d (2 devices, %d cycles); steps %v", step, runs[step], 2*soakCycles, soakCycles, runs)
		}
	}
	cuts := 0
	for _, tg := range r.Targets {
		if tg.Cycles != soakCycles || tg.Stopped != "" {
			t.Errorf("target %s: %d cycles, stopped %q", tg.Name, tg.Cycles, tg.Stopped)
		}
		if tg.Facts["reenumerations"] != fmt.Sprint(soakCycles) {
			t.Errorf("target %s: %q re-enumerations, want %d", tg.Name, tg.Facts["reenumerations"], soakCycles)
		}
		if tg.Facts["provision_cut"] == "" {
			t.Errorf("target %s: no power cut was armed for provisioning", tg.Name)
		}
		for _, k := range []string{"power_cuts_flash", "power_cuts_reboot"} {
			n, _ := strconv.Atoi(tg.Facts[k])
			cuts += n
		}
	}
	if cuts != 2*soakCycles {
		t.Errorf("%d power cuts in the loop, want %d", cuts, 2*soakCycles)
	}
	checkJUnit(t, filepath.Join(out, "soak-junit.xml"), []string{"soak.identity", "soak.dut1", "soak.dut2"}, 0)
	page, err := os.ReadFile(filepath.Join(out, "soak.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("<svg")) || bytes.Contains(page, []byte("<script")) {
		t.Error("soak.html: no inline plot, or a script")
	}
}

// TestSoakCountsAChangedChain: a different valid chain (another device's) written into a
// simulated device's storage between two steps is a changed chain: counted, not retried, the
// device's soak ends there, and hil soak exits 1.
func TestSoakCountsAChangedChain(t *testing.T) {
	t.Parallel()
	sb := provisioned(t, 2)
	dut1, dut2 := sb.Devices[0], sb.Devices[1]
	soakAfterStep.Store(sb.BenchFile, func(target string, cycle int, step string) {
		if target != "dut1" || cycle != 1 || step != "verify" {
			return
		}
		other, err := os.ReadFile(filepath.Join(dut2.DHADir(), "dha_chain.pem"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dut1.DHADir(), "dha_chain.pem"), other, 0o600)
		}
		if err != nil {
			t.Errorf("changing dut1's chain: %v", err)
		}
	})
	t.Cleanup(func() { soakAfterStep.Delete(sb.BenchFile) })
	out := filepath.Join(t.TempDir(), "report")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"soak", "--bench", sb.BenchFile, "--cycles", "3", "--seed", "5", "--out", out}, &stdout, &stderr)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("soak with a changed chain: %v (want a failure, exit status 1)\n%s", err, stdout.String())
	}
	r := readSoakJSON(t, out)
	if r.Counters["changed_chains"] != 1 || r.Counters["torn_chains"] != 0 || r.Counters["double_signatures"] != 0 {
		t.Fatalf("counters %v, want exactly one changed chain", r.Counters)
	}
	for _, tg := range r.Targets {
		switch tg.Name {
		case "dut1":
			if tg.Cycles != 0 || !strings.Contains(tg.Stopped, "changed_chain") {
				t.Errorf("dut1: %d cycles done, stopped %q; want stopped in cycle 1", tg.Cycles, tg.Stopped)
			}
		case "dut2":
			if tg.Cycles != 3 || tg.Stopped != "" {
				t.Errorf("dut2: %d cycles, stopped %q", tg.Cycles, tg.Stopped)
			}
		}
	}
	checkJUnit(t, filepath.Join(out, "soak-junit.xml"), []string{"soak.identity", "soak.dut1", "soak.dut2"}, 2)
	if !strings.Contains(stdout.String(), "changed_chains 1") {
		t.Errorf("the summary does not show the changed chain:\n%s", stdout.String())
	}
}

func TestSoakUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"soak"},
		{"soak", "--bench", "x.yaml", "--cycles", "0"},
		{"soak", "--bench", "x.yaml", "--faults", "lightning"},
		{"soak", "--bench", "x.yaml", "--noise-rate", "2"},
	} {
		if _, _, err := runArgs(args...); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// checkJUnit parses the JUnit XML with encoding/xml: the suites named are there, and failures
// test cases fail.
func checkJUnit(t *testing.T, path string, suites []string, failures int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Failures int      `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("JUnit XML: %v", err)
	}
	have := map[string]bool{}
	failed := 0
	for _, s := range doc.Suites {
		have[s.Name] = true
		for _, c := range s.Cases {
			if c.Failure != nil {
				failed++
			}
		}
	}
	for _, s := range suites {
		if !have[s] {
			t.Errorf("JUnit: no suite %s (have %v)", s, have)
		}
	}
	if failed != failures || doc.Failures != failures {
		t.Errorf("JUnit: %d failing cases, failures=%d; want %d", failed, doc.Failures, failures)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/report"
	"hilbench/harness/station"
	"hilbench/targets"
	"hilbench/targets/acs/sim"
	"hilbench/targets/simbench"
)

func lastReport(t *testing.T, out, command string) *report.Report {
	t.Helper()
	runs, err := filepath.Glob(filepath.Join(out, "runs", "*-"+command, "report.json"))
	if err != nil || len(runs) == 0 {
		t.Fatalf("no %s report under %s", command, out)
	}
	data, err := os.ReadFile(runs[len(runs)-1])
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func outcome(t *testing.T, r *report.Report, target string) *report.Outcome {
	t.Helper()
	for _, o := range r.Outcomes {
		if o.Target == target {
			return o
		}
	}
	t.Fatalf("no outcome for %s in %s report", target, r.Command)
	return nil
}

// One faulty device fails at its step; the other carries on and passes; the exit is non-zero.
func TestProvisionAllOneDeviceFails(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 2, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	bad, _ := sb.Device("dut2")
	if err := bad.SetFault(sim.FaultSetCertReject, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"provision", "--bench", sb.BenchFile, "--all"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 targets failed") {
		t.Fatalf("provision --all: err = %v, want 1 of 2 failed\n%s", err, stdout.String())
	}
	rep := lastReport(t, sb.Bench.Output, "provision")
	if o := outcome(t, rep, "dut1"); !o.Passed || o.Facts["sha256"] == "" {
		t.Errorf("dut1: %+v, want passed with a fingerprint", o)
	}
	if o := outcome(t, rep, "dut2"); o.Passed || o.Step != "set_cert" {
		t.Errorf("dut2: %+v, want failed at set_cert", o)
	}
	for _, want := range []string{"TARGET", "dut1", "PASS", "dut2", "FAIL", "set_cert", "1 passed, 1 failed"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	// The station's ledger holds dut1's identity: verify matches it and provisioning again is
	// "already provisioned".
	dut1 := outcome(t, rep, "dut1")
	if dut1.Facts["already"] != "false" || dut1.Facts["tx_bytes"] == "" || dut1.Facts["rx_bytes"] == "" || len(dut1.Facts["barcode_public_key"]) != 80 || dut1.Facts["control_log_public_key"] == "" {
		t.Errorf("dut1 facts %v", dut1.Facts)
	}
	recorded := ledgerKnows(ctx, t, sb, "dut1")
	if !recorded {
		t.Fatal("the station's ledger does not hold dut1's chain after provisioning it")
	}

	// Verify with reboot and factory reset: dut1's identity survives; dut2 has none.
	stdout.Reset()
	err = run(ctx, []string{"verify", "--bench", sb.BenchFile, "--all", "--reboot", "--factory-reset"}, &stdout, &stderr)
	if err == nil {
		t.Fatalf("verify passed with an unprovisioned dut2:\n%s", stdout.String())
	}
	rep = lastReport(t, sb.Bench.Output, "verify")
	wantRecord := map[bool]string{true: "matched", false: "none"}[recorded]
	if o := outcome(t, rep, "dut1"); !o.Passed || o.Facts["survived"] != "reboot,factory-reset" || o.Facts["record"] != wantRecord || o.Facts["sha256"] != dut1.Facts["sha256"] {
		t.Errorf("dut1 verify: %+v, want record %s", o, wantRecord)
	}
	if o := outcome(t, rep, "dut2"); o.Passed || o.Step != "read_back" {
		t.Errorf("dut2 verify without a chain: %+v", o)
	}

	// Provisioning dut1 again signs nothing: it is already provisioned, or refused.
	stdout.Reset()
	err = run(ctx, []string{"provision", "--bench", sb.BenchFile, "--target", "dut1"}, &stdout, &stderr)
	o := outcome(t, lastReport(t, sb.Bench.Output, "provision"), "dut1")
	if recorded {
		if err != nil || !o.Passed || o.Facts["already"] != "true" || o.Facts["sha256"] != dut1.Facts["sha256"] ||
			!strings.Contains(stdout.String(), "already provisioned (ledger record matches)") {
			t.Errorf("provisioning a recorded device again: %v, %+v\n%s", err, o, stdout.String())
		}
	} else if err == nil || o.Step != "check-provisioned" || !strings.Contains(o.Error, "already holds") || !strings.Contains(o.Error, "--reprovision") {
		t.Errorf("re-provision: %v, %+v", err, o)
	}
	if _, err := os.Stat(filepath.Join(sb.Bench.Output, "devices")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a devices/ record directory was written (%v): the ledger is the record", err)
	}
}

// ledgerKnows says whether the bench station's Issuer holds a chain for the key of the chain
// the target's device holds.
func ledgerKnows(ctx context.Context, t *testing.T, sb *simbench.Bench, target string) bool {
	t.Helper()
	st, err := station.Open(ctx, sb.Bench, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tg, err := sb.Bench.Target(target)
	if err != nil {
		t.Fatal(err)
	}
	d, err := targets.Open(ctx, tg, targets.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	chain, err := d.ReadChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.Issuer.Lookup(ctx, chain[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k.Live() && k.Issued != nil
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"provision"},
		{"provision", "--bench", "x.yaml"},
		{"provision", "--bench", "x.yaml", "--all", "--target", "dut1"},
		{"dak"},
		{"sim", "-n", "0"},
		// read unprotect is a DfuSe command; dut1 is flashed over its console
		{"flash", "--bench", "../../fixtures/benches/example.yaml", "--target", "dut1", "--unprotect", "fw.bin"},
	} {
		var out, errOut bytes.Buffer
		if err := run(ctx, args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("hil %v: err = %v, want a usage error", args, err)
		}
	}
}

func TestBenchFileErrorsNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte("signer:\n  type: softdak\ntargets:\n  - nme: dut1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"provision", "--bench", path, "--all"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "lab.yaml:4") {
		t.Fatalf("err = %v, want one naming lab.yaml:4", err)
	}
}

// The agent owns the DAK; `hil provision` with an agent bench signs through it; every signature
// is counted against the budget and recorded, and the budget stops the line at its maximum.
func TestProvisionThroughAgentWithBudget(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 3, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	// The serving bench: the SoftDAK, a budget of 2 signatures, the socket in a short path.
	serving := *sb.Bench
	serving.Signer.MaxSignatures = 2
	serving.Signer.StateDir = filepath.Join(sb.Dir, "state")
	sockDir, err := os.MkdirTemp("", "hil-agent-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	serving.Signer.Socket = filepath.Join(sockDir, "agent.sock")
	servingFile := filepath.Join(sb.Dir, "serving.yaml")
	if err := serving.Write(servingFile); err != nil {
		t.Fatal(err)
	}
	client := *sb.Bench
	client.Signer = bench.SignerConfig{Type: bench.SignerAgent, Socket: serving.Signer.Socket, Roots: sb.Bench.Signer.Roots}
	clientFile := filepath.Join(sb.Dir, "client.yaml")
	if err := client.Write(clientFile); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serveCtx, stopServe := context.WithCancel(ctx)
	var serveOut syncBuffer
	served := make(chan error, 1)
	go func() {
		served <- run(serveCtx, []string{"signer", "serve", "--bench", servingFile}, &serveOut, &serveOut)
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(serving.Signer.Socket); err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("agent did not start:\n%s", serveOut.String())
		}
		time.Sleep(25 * time.Millisecond)
	}

	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"provision", "--bench", clientFile, "--all", "--jobs", "1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 targets failed") {
		t.Fatalf("provision through the agent with a budget of 2: err = %v\n%s", err, stdout.String())
	}
	rep := lastReport(t, sb.Bench.Output, "provision")
	failed := 0
	for _, o := range rep.Outcomes {
		if !o.Passed {
			failed++
			if o.Step != "issue" || !strings.Contains(o.Error, "budget") {
				t.Errorf("%s failed at %s (%s), want issue refused by the budget", o.Target, o.Step, o.Error)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d targets failed, want 1", failed)
	}
	stdout.Reset()
	if err := run(ctx, []string{"signer", "status", "--bench", servingFile}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "issued 2") {
		t.Errorf("signer status: %v\n%s", err, stdout.String())
	}
	stopServe()
	if err := <-served; err != nil {
		t.Errorf("signer serve: %v\n%s", err, serveOut.String())
	}
	audit, err := os.ReadFile(filepath.Join(serving.Signer.StateDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(audit), "\n"); n != 2 {
		t.Errorf("audit log has %d records, want 2:\n%s", n, audit)
	}
}

// syncBuffer is a bytes.Buffer safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ACK modules go through the same provision and verify as ACS devices: native modules report
// their line statistics, the external one says the vendor tool provisioned it.
func TestProvisionAndVerifyACKModules(t *testing.T) {
	sb, err := simbench.StartACK(t.TempDir(), simbench.ACKOptions{Modules: 1, External: 1, BootDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"provision", "--bench", sb.BenchFile, "--all"}, &stdout, &stderr); err != nil {
		t.Fatalf("provision: %v\n%s", err, stdout.String())
	}
	rep := lastReport(t, sb.Bench.Output, "provision")
	native, ext := outcome(t, rep, "mod1"), outcome(t, rep, "ext1")
	for _, k := range []string{"sha256", "frames_sent", "retransmissions", "naks", "damaged_frames", "timeouts", "recoveries", "busy_answers", "chunks_shortened", "tx_bytes", "rx_bytes"} {
		if native.Facts[k] == "" {
			t.Errorf("mod1 report lacks %s: %v", k, native.Facts)
		}
	}
	if ext.Facts["provisioned_by"] != "vendor tool" || ext.Facts["sha256"] == "" {
		t.Errorf("ext1 facts %v", ext.Facts)
	}
	stdout.Reset()
	if err := run(ctx, []string{"verify", "--bench", sb.BenchFile, "--all", "--reboot"}, &stdout, &stderr); err != nil {
		t.Fatalf("verify: %v\n%s", err, stdout.String())
	}
	rep = lastReport(t, sb.Bench.Output, "verify")
	for _, name := range []string{"mod1", "ext1"} {
		if o := outcome(t, rep, name); !o.Passed || o.Facts["survived"] != "reboot" || o.Facts["sha256"] == "" {
			t.Errorf("%s verify: %+v", name, o)
		}
	}
	// The vendor tool's chain is not in the ledger: only its path to the roots was checked.
	if o := outcome(t, rep, "ext1"); o.Facts["record"] != "none" {
		t.Errorf("ext1 record %q, want none", o.Facts["record"])
	}
}

// hil flash over the console goes through the device's Flasher with the bench's flash section.
func TestFlashOverTheConsole(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 1, BootDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "fw.bin")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"sim", "image", "--version", "acs-sim-3.1.4", "--size", "20000", "--out", img}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := run(ctx, []string{"flash", "--bench", sb.BenchFile, "--target", "dut1", "--expect-version", "acs-sim-3.1.4", img}, &stdout, &stderr); err != nil {
		t.Fatalf("flash: %v\n%s", err, stdout.String())
	}
	o := outcome(t, lastReport(t, sb.Bench.Output, "flash"), "dut1")
	if !o.Passed || o.Facts["version"] != "acs-sim-3.1.4" || o.Facts["ymodem_bytes_per_s"] == "" || o.Facts["transfers"] != "1" {
		t.Errorf("flash outcome %+v", o)
	}
	// The line counters are read after the flash: the image went over the console.
	if tx, err := strconv.Atoi(o.Facts["tx_bytes"]); err != nil || tx < 20000 {
		t.Errorf("tx_bytes %q after sending a 20000-byte image", o.Facts["tx_bytes"])
	}
	if v := sb.Devices[0].RunningVersion(); v != "acs-sim-3.1.4" {
		t.Errorf("the device runs %q", v)
	}
}

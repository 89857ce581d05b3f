package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/targets/simbench"
)

// TestMain lets the test binary stand in for the hil command (HIL_RUN_MAIN=1): the crash
// campaign kills real processes, and a process is what a factory floor loses.
func TestMain(m *testing.M) {
	if os.Getenv("HIL_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hilProc starts the test binary as `hil args...`.
func hilProc(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HIL_RUN_MAIN=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// hilRun runs hil to completion and returns its combined output and error.
func hilRun(ctx context.Context, args ...string) (string, error) {
	out, err := hilProc(ctx, args...).CombinedOutput()
	return string(out), err
}

// campaign kills `hil provision --all` at random moments, then provisions once more and judges
// the result: every device verified, the ledger consistent, one certificate per device.
//
// A moment is a step chosen at random (the kill comes 0 to 30 ms after some device starts it)
// or, when the run never reaches it, the end of the window: so kills land while devices are
// being worked on, not in runs that find everything done.
type campaign struct {
	benchFile string
	devices   int
	kills     int
	steps     []string      // the progress steps a kill may follow
	window    time.Duration // kill by then whatever happened
	seed      uint64
}

func crashKills(t *testing.T) int {
	if s := os.Getenv("HIL_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("HIL_CRASH_KILLS=%q: %v", s, err)
		}
		return n
	}
	return 30
}

// skipCampaign: the campaign runs once, without the race detector (make test runs it so): under
// it every hil process it kills is several times slower, and the race detector has nothing to
// find across processes. HIL_CRASH_RACE=1 runs it anyway.
func skipCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("crash campaign: long")
	}
	if raceEnabled && os.Getenv("HIL_CRASH_RACE") != "1" {
		t.Skip("crash campaign: runs without -race (go test -run CrashCampaign ./cmd/hil); HIL_CRASH_RACE=1 runs it here")
	}
}

func (c campaign) run(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15))
	t.Logf("seed %d (HIL_CRASH_SEED), %d kills", c.seed, c.kills)
	killedAt := map[string]int{}
	for i := range c.kills {
		// Sweep the cycle's steps in order, so devices get further with each sweep; the kill
		// follows the nth device to start the step, after a random delay.
		step := c.steps[i%len(c.steps)]
		nth := 1 + rng.IntN(c.devices)
		delay := time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
		cmd := hilProc(ctx, "provision", "--bench", c.benchFile, "--all")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		reached := make(chan string, 1)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			sc := bufio.NewScanner(stdout)
			n := 0
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) < 3 || f[2] != step {
					continue
				}
				if n++; n == nth {
					reached <- f[1]
				}
			}
		}()
		what := "the window's end"
		select {
		case target := <-reached:
			time.Sleep(delay)
			what = fmt.Sprintf("%v after %s, device %d to start it, started %s", delay, target, nth, step)
			killedAt[step]++
		case <-ended:
			what = "nothing: the run ended before " + step
		case <-time.After(c.window):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = cmd.Wait()
		<-ended
		if testing.Verbose() {
			t.Logf("kill %d: %s (%v)", i+1, what, err)
		}
	}
	t.Logf("kills that followed a step: %v", killedAt)

	out, err := hilRun(ctx, "provision", "--bench", c.benchFile, "--all")
	if err != nil {
		t.Fatalf("provision after %d kills: %v\n%s", c.kills, err, out)
	}
	out, err = hilRun(ctx, "verify", "--bench", c.benchFile, "--all")
	if err != nil {
		t.Fatalf("verify after the campaign: %v\n%s", err, out)
	}
	out, err = hilRun(ctx, "ledger", "check", "--bench", c.benchFile)
	if err != nil {
		t.Fatalf("ledger check after the campaign: %v\n%s", err, out)
	}
	out, err = hilRun(ctx, "ledger", "export", "--bench", c.benchFile, "--format", "jsonl")
	if err != nil {
		t.Fatalf("ledger export: %v\n%s", err, out)
	}
	certs := map[string]int{} // device key -> certificates issued for it
	live := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	var reserved, signatures int
	for sc.Scan() {
		var r struct {
			DeviceKey   string `json:"device_key"`
			State       string `json:"state"`
			Fingerprint string `json:"fingerprint"`
			Signatures  int    `json:"signatures"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		signatures += r.Signatures
		if r.Fingerprint != "" {
			certs[r.DeviceKey]++
		}
		if r.State == "reserved" {
			reserved++
		}
		if r.State != "replaced" {
			if prev, ok := live[r.DeviceKey]; ok {
				t.Errorf("device key %s has two live records (%s and %s)", r.DeviceKey, prev, r.State)
			}
			live[r.DeviceKey] = r.State
		}
	}
	for key, n := range certs {
		if n != 1 {
			t.Errorf("device key %s: %d certificates, want exactly 1", key, n)
		}
	}
	verified := 0
	for _, st := range live {
		if st == "verified" {
			verified++
		}
	}
	if len(certs) != c.devices || verified != c.devices {
		t.Errorf("%d devices hold %d certified keys, %d verified records (and %d reservations left); want %d each",
			c.devices, len(certs), verified, reserved, c.devices)
	}
	t.Logf("%d devices: %d certificates, %d DAK signatures (re-signed after a kill between reservation and record: %d)",
		c.devices, len(certs), signatures, signatures-len(certs))
}

func campaignSeed(t *testing.T) uint64 {
	if s := os.Getenv("HIL_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HIL_CRASH_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// The steps of each family's cycle a kill may follow (as `hil provision` prints them).
var (
	acsSteps = []string{"sync", "check-provisioned", "key_gen", "get_csr", "issue", "upload", "set_cert", "read_back", "verify"}
	ackSteps = []string{"hello", "keygen", "csr", "issue", "upload", "commit", "read_back", "verify"}
)

// 30 kill -9 of hil provision on 8 simulated ACS devices signing with SoftDAK, then one more run.
func TestCrashCampaignACS(t *testing.T) {
	skipCampaign(t)
	t.Parallel()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 8, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	campaign{benchFile: sb.BenchFile, devices: 8, kills: crashKills(t), steps: acsSteps, window: 5 * time.Second, seed: campaignSeed(t)}.run(t)
}

// The same with the DAK on a virtual YubiKey (through pcscd), which hil opens in each run.
func TestCrashCampaignACSYubiKey(t *testing.T) {
	skipCampaign(t)
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	yk, err := simbench.StartVirtualYubiKey(ctx, filepath.Join(dir, "card"), filepath.Join(dir, "bench", "dak"), "127.0.0.1:35964")
	if err != nil {
		t.Fatal(err)
	}
	defer yk.Close()
	sb, err := simbench.Start(filepath.Join(dir, "bench"), simbench.Options{Devices: 8, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	b := sb.Bench
	b.Signer = yk.Signer
	benchFile := filepath.Join(dir, "bench-yubikey.yaml")
	if err := b.Write(benchFile); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.Load(benchFile); err != nil {
		t.Fatal(err)
	}
	campaign{benchFile: benchFile, devices: 8, kills: crashKills(t), steps: acsSteps, window: 5 * time.Second, seed: campaignSeed(t)}.run(t)
}

// 30 kill -9 of hil provision on 4 simulated ACK modules at 115200 baud.
func TestCrashCampaignACK(t *testing.T) {
	skipCampaign(t)
	t.Parallel()
	ab, err := simbench.StartACK(t.TempDir(), simbench.ACKOptions{Modules: 4, Baud: 115200, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	campaign{benchFile: ab.BenchFile, devices: 4, kills: crashKills(t), steps: ackSteps, window: 8 * time.Second, seed: campaignSeed(t)}.run(t)
}

package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/ledger"
	stationrun "hilbench/harness/station/run"
	"hilbench/harness/station/web"
	"hilbench/harness/station/web/webtest"
	"hilbench/harness/testrecord"
	"hilbench/targets/acs/sim"
	"hilbench/targets/simbench"
)

// stationOpts are quick station options for tests: short probes, no terminal.
func stationOpts(benchFile, planFile, name string, maxDUTs int) stationOptions {
	return stationOptions{bench: benchFile, plan: planFile, name: name, maxDUTs: maxDUTs,
		probeEvery: 100 * time.Millisecond, probeTimeout: time.Second, display: true}
}

// writePlan writes a test plan for the simulated bench: dut_id, provision, verify and the given
// extra phases, released by power off.
func writePlan(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plan.yaml")
	body := `name: test-plan
dut_id: {command: serial_number, regexp: '^(\S+)'}
release: power_off
defaults: {timeout: 30s}
phases:
  - type: provision
  - type: verify
` + extra
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func openLedger(t *testing.T, benchFile string) ledger.Store {
	t.Helper()
	b, err := bench.Load(benchFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ledger.Open(context.Background(), b.Ledger, b.Output)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// validateRecords checks record files against docs/schemas with python3-jsonschema.
func validateRecords(t *testing.T, files []string) {
	t.Helper()
	if len(files) == 0 {
		t.Fatal("no record files")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing")
		}
		t.Log("python3 missing: records not validated against the schema")
		return
	}
	script := `
import json, sys, jsonschema
v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
bad = [f"{f}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for f in sys.argv[2:] for e in v.iter_errors(json.load(open(f)))]
print("\n".join(bad)); sys.exit(1 if bad else 0)
`
	out, err := exec.Command("python3", append([]string{"-c", script, "../../docs/schemas/test-record.schema.json"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("records against the schema: %v\n%s", err, out)
	}
}

type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Props []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
	} `xml:"testsuite"`
}

// TestStationEndToEnd: `hil sim --feed 2` on 3 slots (its own process) and `hil station
// --max-duts 6` with the example plan: six fresh DUTs, each PASS with its own serial and
// identity, in the ledger, as JSON records the schema accepts, and in the batch's JUnit XML.
func TestStationEndToEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	simCmd := hilProc(ctx, "sim", "--n", "3", "--feed", "2", "--dir", dir, "--boot-delay", "100ms", "--insert-delay", "200ms")
	simOut, err := simCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	simCmd.Stderr = os.Stderr
	if err := simCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-simCmd.Process.Pid, syscall.SIGTERM)
		simCmd.Wait()
	}()
	sc := bufio.NewScanner(simOut)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "feeding ") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	benchFile := filepath.Join(dir, "bench.yaml")
	var out syncBuffer
	o := stationOpts(benchFile, "../../fixtures/plans/example.yaml", "e2e", 6)
	o.operator = "op-1"
	if err := runStation(ctx, o, &out, &out); err != nil {
		t.Fatalf("station: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "6 DUT(s): 6 PASS") {
		t.Errorf("summary:\n%s", out.String())
	}
	st := openLedger(t, benchFile)
	runs, err := st.ListTests(ctx, ledger.TestFilter{Station: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 6 {
		t.Fatalf("%d test runs in the ledger, want 6", len(runs))
	}
	serialRE := regexp.MustCompile(`^HS[0-9A-F]{10}$`)
	duts, certs := map[string]bool{}, map[string]bool{}
	var files []string
	for _, r := range runs {
		if r.Outcome != ledger.TestPass || r.Operator != "op-1" || !serialRE.MatchString(r.DUTID) {
			t.Errorf("test run %s: outcome %s, operator %q, DUT %q", r.ID, r.Outcome, r.Operator, r.DUTID)
		}
		duts[r.DUTID] = true
		f := filepath.Join(dir, "out", "records", r.ID, "record.json")
		files = append(files, f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := testrecord.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Outcome != testrecord.Pass || rec.DUTID != r.DUTID || rec.Identity == nil || len(rec.Phases) != 9 {
			t.Fatalf("record %s: %+v", r.ID, rec)
		}
		certs[rec.Identity.Fingerprint] = true
		for _, a := range rec.Attachments {
			if _, err := os.Stat(a.Path); err != nil {
				t.Errorf("record %s: attachment %s: %v", r.ID, a.Name, err)
			}
		}
		if last := rec.Phases[8]; len(last.Measurements) != 1 || last.Measurements[0].Units != "bytes" || last.Measurements[0].Outcome != testrecord.Pass {
			t.Errorf("record %s: chain_size measurement %+v", r.ID, last.Measurements)
		}
	}
	if len(duts) != 6 || len(certs) != 6 {
		t.Errorf("%d distinct DUTs and %d distinct certificates, want 6 each", len(duts), len(certs))
	}
	validateRecords(t, files)
	junits, _ := filepath.Glob(filepath.Join(dir, "out", "runs", "*-station", "junit.xml"))
	if len(junits) != 1 {
		t.Fatalf("JUnit files %v", junits)
	}
	b, _ := os.ReadFile(junits[0])
	var doc junitDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Suites) != 6 || doc.Tests != 54 || doc.Failures != 0 {
		t.Errorf("JUnit: %d suites, %d tests, %d failures", len(doc.Suites), doc.Tests, doc.Failures)
	}
	for _, s := range doc.Suites {
		if !duts[s.Name] {
			t.Errorf("JUnit suite %q is no DUT of the ledger", s.Name)
		}
	}
}

// TestStationPlanErrors: a plan naming an unknown phase or a limit of the wrong type stops the
// station before it touches anything, naming file, line and field.
func TestStationPlanErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	benchFile := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(benchFile, []byte("signer: {type: softdak, key: k.pem, certificate: c.pem}\ntargets:\n  - {name: dut1, family: acs, console: {port: /dev/null}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(dir, "bad.yaml")
	os.WriteFile(planFile, []byte("name: p\nphases:\n  - type: verify\n  - type: burn_in\n  - type: shell\n    command: uptime\n    measurement: {regexp: '([0-9]+)', max: high}\n"), 0o644)
	_, _, err := runArgs("station", "--bench", benchFile, "--plan", planFile)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{planFile + `:4: phases[1].type: unknown phase "burn_in"`, planFile + `:7: phases[2].measurement.max: want a number, got "high"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("a refused plan left output behind")
	}
	if _, _, err := runArgs("station", "--bench", benchFile); err == nil || !strings.Contains(err.Error(), "--plan PLAN") {
		t.Errorf("without --plan: %v", err)
	}
}

// TestStationPulledAndFaultyDUTs: on 3 feeding slots, the first DUT of dut1 is pulled mid-phase
// (ERROR, that phase named), the first of dut2 has a corrupt chain (FAIL), and neither stops the
// other slots: every other DUT passes.
func TestStationPulledAndFaultyDUTs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Three boards a slot: the pulled slot's next board is inserted while the station still
	// fails the pulled one, and the release at the end of that test takes it out untested.
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 3, BootDelay: 50 * time.Millisecond, Feed: 3,
		InsertDelay: 100 * time.Millisecond, RemoveGrace: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := sb.Slots[1].Device().SetFault(sim.FaultChainCorrupt, true); err != nil {
		t.Fatal(err)
	}
	pulledSerial := sb.Slots[0].Serial()
	corruptSerial := sb.Slots[1].Serial()
	plan := writePlan(t, "  - name: burn_in\n    type: shell\n    command: sleep 3\n    timeout: 6s\n")
	var out syncBuffer
	o := stationOpts(sb.BenchFile, plan, "faults", 6)
	var once sync.Once
	o.hook = func(r *stationrun.Runner) {
		go func() {
			for {
				ch := r.Changed()
				if sn := r.Snapshot(); sn.Slots[0].Phase == "burn_in" && sn.Slots[0].DUT == pulledSerial {
					once.Do(func() {
						time.Sleep(time.Second) // the command is running (3 s)
						t.Logf("%s pulling %s", time.Now().Format("15:04:05.000"), pulledSerial)
						if err := sb.Slots[0].Pull(); err != nil {
							t.Error(err)
						}
						t.Logf("%s pulled", time.Now().Format("15:04:05.000"))
					})
					return
				}
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if err := runStation(ctx, o, &out, &out); err != nil {
		t.Fatalf("station: %v\n%s", err, out.String())
	}
	defer func() {
		if t.Failed() {
			t.Logf("station output:\n%s", out.String())
		}
	}()
	runs, err := openLedger(t, sb.BenchFile).ListTests(context.Background(), ledger.TestFilter{Station: "faults"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 6 {
		t.Fatalf("%d runs, want 6\n%s", len(runs), out.String())
	}
	var files []string
	for _, r := range runs {
		files = append(files, filepath.Join(sb.Bench.Output, "records", r.ID, "record.json"))
		rec, err := testrecord.Parse(r.Record)
		if err != nil {
			t.Fatal(err)
		}
		switch r.DUTID {
		case pulledSerial:
			if r.Outcome != ledger.TestError || rec.FailedPhase != "burn_in" {
				t.Errorf("pulled DUT: %s at %q: %s", r.Outcome, rec.FailedPhase, rec.Message)
			}
		case corruptSerial:
			if r.Outcome != ledger.TestFail || rec.FailedPhase != "provision" || !strings.Contains(rec.Message, "read_back") {
				t.Errorf("DUT with a corrupt chain: %s at %q: %s", r.Outcome, rec.FailedPhase, rec.Message)
			}
			if n := len(rec.Phases); n != 4 || rec.Phases[2].Outcome != testrecord.Skip {
				t.Errorf("phases after the failure: %+v", rec.Phases)
			}
		default:
			if r.Outcome != ledger.TestPass {
				t.Errorf("DUT %s in %s: %s: %s", r.DUTID, r.Slot, r.Outcome, rec.Message)
			}
		}
	}
	validateRecords(t, files)
	if !strings.Contains(out.String(), "6 DUT(s): 4 PASS, 1 FAIL, 1 ERROR") {
		t.Errorf("summary:\n%s", out.String())
	}
}

// TestStationAlreadyProvisioned: a DUT holding an identity the ledger does not know is refused
// (FAIL, nothing signed) under already_provisioned: refuse, and given a new one under
// reprovision.
func TestStationAlreadyProvisioned(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 1, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if _, _, err := runArgs("provision", "--bench", sb.BenchFile, "--all"); err != nil {
		t.Fatal(err)
	}
	// A new ledger: the identity on the device is no longer one this station knows.
	b := sb.Bench
	os.RemoveAll(b.Output)
	for i, mode := range []string{"refuse", "reprovision"} {
		p := filepath.Join(t.TempDir(), "plan.yaml")
		os.WriteFile(p, []byte("name: p\nphases:\n  - type: provision\n    already_provisioned: "+mode+"\n  - type: verify\n"), 0o644)
		var out syncBuffer
		name := "already-" + mode
		if err := runStation(ctx, stationOpts(sb.BenchFile, p, name, 1), &out, &out); err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out.String())
		}
		st := openLedger(t, sb.BenchFile)
		runs, err := st.ListTests(ctx, ledger.TestFilter{Station: name})
		if err != nil || len(runs) != 1 {
			t.Fatalf("%s: %v, %d runs", mode, err, len(runs))
		}
		rec, _ := testrecord.Parse(runs[0].Record)
		recs, _ := st.List(ctx, ledger.Filter{})
		switch i {
		case 0:
			if runs[0].Outcome != ledger.TestFail || rec.FailedPhase != "provision" || !strings.Contains(rec.Message, "refuse") || len(recs) != 0 {
				t.Errorf("refuse: %s at %s: %s; %d ledger records", runs[0].Outcome, rec.FailedPhase, rec.Message, len(recs))
			}
		case 1:
			if runs[0].Outcome != ledger.TestPass || len(recs) != 1 {
				t.Errorf("reprovision: %s: %s; %d ledger records", runs[0].Outcome, rec.Message, len(recs))
			}
		}
	}
}

// TestSecondStationRefused: a second station on the same ports fails at start, naming the first.
func TestSecondStationRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 2, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	plan := writePlan(t, "")
	first := hilProc(ctx, "station", "--bench", sb.BenchFile, "--plan", plan, "--station", "first", "--display", "lines")
	pipe, _ := first.StdoutPipe()
	first.Stderr = first.Stdout
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
		first.Wait()
	}()
	sc := bufio.NewScanner(pipe)
	for sc.Scan() && !strings.Contains(sc.Text(), "RUNNING") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	_, _, err = runArgs("station", "--bench", sb.BenchFile, "--plan", plan, "--station", "second")
	if err == nil || !strings.Contains(err.Error(), "in use by another station") || !strings.Contains(err.Error(), "station --bench "+sb.BenchFile) {
		t.Fatalf("second station: %v", err)
	}
}

// TestStationKilledMidBatch: kill -9 of a station at moments swept through the DHA cycle, four
// times; each start records the tests left RUNNING as ABORTED and tests the DUTs again; in the end
// both DUTs pass and neither was signed twice.
func TestStationKilledMidBatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The boards stay in their slots (no feed, no release): every start tests them again, and a
	// DUT whose test a kill did not reach is simply tested once more (its chain comes back from
	// the ledger, no signature).
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 2, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte("name: crash\ndut_id: {command: serial_number, regexp: '^(\\S+)'}\nphases:\n  - type: provision\n  - type: verify\n  - type: reboot\n"), 0o644)
	// Kills at moments swept through the cycle: each restart first ends what the one before
	// left RUNNING, then starts on the same DUTs again.
	for i, delay := range []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond} {
		cmd := hilProc(ctx, "station", "--bench", sb.BenchFile, "--plan", plan, "--station", "crash", "--display", "lines",
			"--probe-every", "100ms", "--probe-timeout", "1s")
		pipe, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(pipe)
		for sc.Scan() && !strings.Contains(sc.Text(), " provision ") {
		}
		time.Sleep(delay)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d: %v after provision started", i+1, delay)
	}

	st := openLedger(t, sb.BenchFile)
	running, err := st.ListTests(ctx, ledger.TestFilter{Station: "crash", Outcome: ledger.TestRunning})
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if err := runStation(ctx, stationOpts(sb.BenchFile, plan, "crash", 2), &out, &out); err != nil {
		t.Fatalf("restart: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "recorded ABORTED"); n != len(running) {
		t.Errorf("%d tests said recorded ABORTED, want %d\n%s", n, len(running), out.String())
	}
	for _, r := range running {
		got, err := st.GetTest(ctx, r.ID)
		if err != nil || got.Outcome != ledger.TestAborted {
			t.Errorf("test %s after the restart: %v %v", r.ID, got, err)
		}
		b, err := os.ReadFile(filepath.Join(sb.Bench.Output, "records", r.ID, "record.json"))
		if rec, perr := testrecord.Parse(b); err != nil || perr != nil || rec.Outcome != testrecord.Aborted {
			t.Errorf("record file of %s: %v %v", r.ID, err, perr)
		}
	}
	all, _ := st.ListTests(ctx, ledger.TestFilter{Station: "crash"})
	aborted := 0
	for i, r := range all {
		switch {
		case i < 2 && r.Outcome != ledger.TestPass: // the restart's, newest first
			t.Errorf("test %s (%s) after the restart: %s", r.ID, r.Slot, r.Outcome)
		case r.Outcome == ledger.TestAborted:
			aborted++
		case r.Outcome != ledger.TestPass:
			t.Errorf("test %s (%s): %s", r.ID, r.Slot, r.Outcome)
		}
	}
	// The first kill comes as provision starts: after BeginTest, so at least its tests were RUNNING.
	if aborted == 0 {
		t.Error("no test was recorded ABORTED")
	}
	t.Logf("%d tests: %d killed (ABORTED)", len(all), aborted)
	// Exactly once: one certificate per DUT, and the budget counts exactly those signatures.
	recs, err := st.List(ctx, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	perDUT := map[string]int{}
	for _, r := range recs {
		perDUT[r.DeviceID]++
	}
	if len(recs) != 2 {
		t.Errorf("%d ledger records for 2 DUTs: %v", len(recs), perDUT)
	}
	if problems, err := st.Check(ctx); err != nil || len(problems) > 0 {
		t.Errorf("ledger check: %v %v", problems, err)
	}
}

// TestDisplayLines: the terminal mode draws one line per slot in place on a TTY, plain lines
// (on change only) otherwise.
func TestDisplayLines(t *testing.T) {
	t.Parallel()
	var tty, plain strings.Builder
	sn := web.Snapshot{Station: "s", Slots: []web.SlotState{{Name: "dut1", State: web.StateIdle}, {Name: "dut2", State: web.StateFail, DUT: "HS1", FailedPhase: "verify", Message: "chain mismatch"}}}
	dt, dp := stationrun.NewDisplay(&tty, true), stationrun.NewDisplay(&plain, false)
	for range 3 {
		dt.Show(sn)
		dp.Show(sn)
	}
	if n := strings.Count(tty.String(), "\x1b[3A"); n != 2 {
		t.Errorf("TTY: %d cursor-ups of 3 lines, want 2: %q", n, tty.String())
	}
	if got := strings.Count(plain.String(), "\n"); got != 2 || !strings.Contains(plain.String(), "FAIL     HS1") || !strings.Contains(plain.String(), "verify: chain mismatch") {
		t.Errorf("plain: %q", plain.String())
	}
}

// TestStationDrainAndAbort: the first Ctrl-C (Drain) lets the DUTs in flight finish and starts
// no new one; a second (Abort) stops them at once, recorded ABORTED in the ledger and on disk.
func TestStationDrainAndAbort(t *testing.T) {
	t.Parallel()
	for _, abort := range []bool{false, true} {
		name := map[bool]string{false: "drain", true: "abort"}[abort]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 2, BootDelay: 50 * time.Millisecond, Feed: 3,
				InsertDelay: 50 * time.Millisecond, RemoveGrace: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			plan := writePlan(t, "  - name: burn_in\n    type: shell\n    command: sleep 2\n")
			o := stationOpts(sb.BenchFile, plan, name, 0) // no limit: only the operator ends it
			o.hook = func(r *stationrun.Runner) {
				go func() {
					for {
						ch := r.Changed()
						sn := r.Snapshot()
						// Both DUTs in flight (serial read: past BeginTest), whatever their phase.
						if sn.Slots[0].State == web.StateRunning && sn.Slots[0].DUT != "" &&
							sn.Slots[1].State == web.StateRunning && sn.Slots[1].DUT != "" {
							r.Drain()
							if abort {
								r.Abort()
							}
							return
						}
						select {
						case <-ch:
						case <-ctx.Done():
							return
						}
					}
				}()
			}
			var out syncBuffer
			if err := runStation(ctx, o, &out, &out); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			runs, err := openLedger(t, sb.BenchFile).ListTests(context.Background(), ledger.TestFilter{Station: name})
			if err != nil || len(runs) != 2 {
				t.Fatalf("%v: %d runs, want 2 (no DUT started after the drain)\n%s", err, len(runs), out.String())
			}
			want := map[bool]ledger.TestOutcome{false: ledger.TestPass, true: ledger.TestAborted}[abort]
			for _, r := range runs {
				rec, _ := testrecord.Parse(r.Record)
				if r.Outcome != want || rec == nil || rec.Outcome != string(want) {
					t.Errorf("%s: %s, want %s", r.Slot, r.Outcome, want)
					continue
				}
				if abort && (rec.FailedPhase == "" || !strings.Contains(rec.Message, "aborted")) {
					t.Errorf("%s: aborted at %q: %s", r.Slot, rec.FailedPhase, rec.Message)
				}
			}
		})
	}
}

// TestStationServesItsPage: hil station --listen serves the runner's state, its records and
// transcripts, and takes the operator id and stop requests (unknown slots refused, nothing
// changed).
func TestStationServesItsPage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 2, BootDelay: 50 * time.Millisecond, Feed: 1,
		RemoveGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	var out syncBuffer
	o := stationOpts(sb.BenchFile, writePlan(t, ""), "page", 2)
	o.listen = "127.0.0.1:0"
	checked := make(chan error, 1)
	o.hook = func(r *stationrun.Runner) {
		// The runner ends when both DUTs are done: hold the second until the page is checked.
		if err := r.StopSlot("dut2"); err != nil {
			t.Error(err)
		}
		go func() {
			err := checkPage(ctx, r, &out)
			r.StartSlot("dut2")
			checked <- err
		}()
	}
	if err := runStation(ctx, o, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if err := <-checked; err != nil {
		t.Error(err)
	}
	runs, _ := openLedger(t, sb.BenchFile).ListTests(ctx, ledger.TestFilter{Station: "page"})
	if len(runs) != 2 || runs[0].Operator != "op-9" {
		t.Errorf("runs after the page set the operator: %+v", runs)
	}
}

func checkPage(ctx context.Context, r *stationrun.Runner, out *syncBuffer) error {
	addrRE := regexp.MustCompile(`operator page: (http://\S+)/`)
	var base string
	var rec web.RecordLink
	for base == "" || rec.ID == "" {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		if sn := r.Snapshot(); len(sn.Recent) > 0 {
			rec = sn.Recent[0]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	get := func(path string) (int, string, error) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	post := func(path, body string) (int, error) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, body, err := get("/api/state"); err != nil || code != 200 || !strings.Contains(body, `"station":"page"`) || !strings.Contains(body, rec.ID) {
		return fmt.Errorf("GET /api/state: %d %v %s", code, err, body)
	}
	if code, body, err := get("/records/" + rec.ID); err != nil || code != 200 || !strings.Contains(body, `"dut_id": "`+rec.DUT+`"`) {
		return fmt.Errorf("GET record: %d %v %s", code, err, body)
	}
	if code, body, err := get("/records/" + rec.ID + "/transcript"); err != nil || code != 200 || !strings.Contains(body, "serial_number") {
		return fmt.Errorf("GET transcript: %d %v %.200s", code, err, body)
	}
	if code, _, _ := get("/records/nope-0/transcript"); code != 404 {
		return fmt.Errorf("GET an unknown record's transcript: %d", code)
	}
	if code, err := post("/api/slots/dut9/stop", ""); err != nil || code/100 != 4 {
		return fmt.Errorf("POST stop of an unknown slot: %d %v", code, err)
	}
	if code, err := post("/api/operator", `{"operator":"op-9"}`); err != nil || code/100 != 2 {
		return fmt.Errorf("POST operator: %d %v", code, err)
	}
	if op := r.Snapshot().Operator; op != "op-9" {
		return fmt.Errorf("operator after the page set it: %q", op)
	}
	return nil
}

// TestStationPageInABrowser: the operator page of a real station, in headless Chromium: 4
// simulated slots go from idle to PASS showing their DUTs' serials, the slot whose device has a
// corrupt chain shows FAIL naming the phase, and stop and start on a slot reach the station.
func TestStationPageInABrowser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bctx, bcancel := webtest.Browser(t)
	defer bcancel()
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 4, BootDelay: 50 * time.Millisecond, Feed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := sb.Slots[2].Device().SetFault(sim.FaultChainCorrupt, true); err != nil {
		t.Fatal(err)
	}
	var serials []string
	for _, s := range sb.Slots {
		serials = append(serials, s.Serial())
	}
	var out syncBuffer
	o := stationOpts(sb.BenchFile, writePlan(t, ""), "browser", 0)
	o.listen = "127.0.0.1:0"
	runner := make(chan *stationrun.Runner, 1)
	o.hook = func(r *stationrun.Runner) { runner <- r }
	done := make(chan error, 1)
	go func() { done <- runStation(ctx, o, &out, &out) }()
	r := <-runner
	defer func() {
		r.Drain()
		if err := <-done; err != nil {
			t.Errorf("station: %v\n%s", err, out.String())
		}
	}()
	addrRE := regexp.MustCompile(`operator page: (http://\S+)/`)
	var url string
	for url == "" {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			url = m[1] + "/"
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no page address:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	webtest.Open(t, bctx, url)
	for i, name := range []string{"dut1", "dut2", "dut3", "dut4"} {
		want := "pass"
		if i == 2 {
			want = "fail"
		}
		webtest.WaitSlot(t, bctx, name, want)
		if got := webtest.SlotText(t, bctx, name, "dut"); got != serials[i] {
			t.Errorf("slot %s shows DUT %q, want %q", name, got, serials[i])
		}
	}
	if got := webtest.SlotText(t, bctx, "dut3", "failed_phase"); !strings.Contains(got, "provision") {
		t.Errorf("the FAIL tile names phase %q, want provision", got)
	}
	webtest.ClickSlotAction(t, bctx, "dut1")
	webtest.WaitSlot(t, bctx, "dut1", "stopped")
	if st := r.Snapshot().Slots[0].State; st != web.StateStopped {
		t.Errorf("the station's dut1 after Stop: %s", st)
	}
	webtest.ClickSlotAction(t, bctx, "dut1")
	webtest.WaitSlot(t, bctx, "dut1", "idle")
}

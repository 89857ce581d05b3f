package acs_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/station"
	"hilbench/targets/acs"
	"hilbench/targets/acs/sim"
	"hilbench/targets/simbench"
)

// busybox starts a plain `busybox sh -i` on a pty: no simulator, just the shell a device runs, so
// the driver's command lines are judged by busybox ash itself.
func busybox(t *testing.T) *console.Console {
	t.Helper()
	cmd := exec.Command("/bin/busybox", "sh", "-i")
	cmd.Env = []string{"PS1=bb# ", "PATH=/bin:/usr/bin", "HOME=/"}
	f, err := pty.Start(cmd)
	if err != nil {
		t.Skipf("no busybox pty: %v", err)
	}
	con := console.New(f, console.Options{Name: "busybox", Prompt: regexp.MustCompile(`# $`), CursorReply: true})
	t.Cleanup(func() {
		con.Close()
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := con.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return con
}

func TestUploadOnBusybox(t *testing.T) {
	con := busybox(t)
	dir := t.TempDir()
	cmds := acs.DefaultCommands
	cmds.GetChain = "cat " + filepath.Join(dir, "dut.pem")
	d := acs.New(con, acs.Config{Name: "dut", DataDir: dir, Commands: cmds})

	// A chain-sized PEM: several printf chunks.
	data := []byte(strings.Repeat("-----BEGIN CERTIFICATE-----\n"+strings.Repeat("MIIBszCCAVmgAwIBAgIUQ2x1c3RlcmVkIHNlcmlhbCBudW1iZXIgZm9yIHRlc3Q=\n", 9)+"-----END CERTIFICATE-----\n", 3))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Upload(ctx, data); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "dut.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Fatalf("busybox wrote %d bytes, want the %d sent", len(got), len(data))
	}
	raw, err := d.ReadChainPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != string(data) {
		t.Errorf("read back %d bytes, want %d", len(raw), len(data))
	}
}

func TestUploadDigestMismatch(t *testing.T) {
	con := busybox(t)
	cmds := acs.DefaultCommands
	cmds.Digest = "echo 0000 {path}"
	d := acs.New(con, acs.Config{Name: "dut", DataDir: t.TempDir(), Commands: cmds})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.Upload(ctx, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	var se *device.StepError
	if !errors.As(err, &se) || se.Step != acs.StepUpload || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("err = %v, want an upload digest error", err)
	}
}

func TestUploadRefusesUnsafeBytes(t *testing.T) {
	d := acs.New(nil, acs.Config{Name: "dut"})
	if err := d.Upload(context.Background(), []byte("it's\n")); err == nil {
		t.Fatal("a quote in the payload was accepted")
	}
}

// keyGenOnBusybox provisions a device on con that has no chain and no key, so the cycle reaches
// key_gen, which runs keyGen; it returns Provision's error.
func keyGenOnBusybox(t *testing.T, con *console.Console, keyGen string) error {
	t.Helper()
	cmds := acs.DefaultCommands
	cmds.KeyGen = keyGen
	cmds.GetChain = "false"
	cmds.GetCSR = "echo 'ace: dha: no DHA key' >&2; false"
	d := acs.New(con, acs.Config{Name: "dut", DataDir: t.TempDir(), Commands: cmds, CommandTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.Provision(ctx, refusingIssuer{t}, device.Options{})
	return err
}

func TestFailingCommandNamesStatus(t *testing.T) {
	err := keyGenOnBusybox(t, busybox(t), "echo secure element busy >&2; false")
	var se *device.StepError
	if !errors.As(err, &se) || se.Step != acs.StepKeyGen || !strings.Contains(err.Error(), "status 1") || !strings.Contains(err.Error(), "secure element busy") {
		t.Fatalf("err = %v, want key_gen failing with status 1 and the device's message", err)
	}
}

// A get_csr that fails without saying the device has no key stops the cycle before key_gen: the
// device may have a key an interrupted run made, and key_gen would destroy it.
func TestUnclearCSRFailureMakesNoKey(t *testing.T) {
	con := busybox(t)
	cmds := acs.DefaultCommands
	dir := t.TempDir()
	cmds.KeyGen = "touch " + filepath.Join(dir, "keygen-ran")
	cmds.GetChain = "false"
	cmds.GetCSR = "echo 'ace: dha: secure element busy' >&2; false"
	d := acs.New(con, acs.Config{Name: "dut", DataDir: dir, Commands: cmds, CommandTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.Provision(ctx, refusingIssuer{t}, device.Options{})
	if device.StepOf(err) != acs.StepCSR || !strings.Contains(err.Error(), "secure element busy") {
		t.Fatalf("err = %v, want get_csr failing with the device's message", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keygen-ran")); err == nil {
		t.Error("key_gen ran after a get_csr failure that did not say 'no key'")
	}
}

// refusingIssuer fails the test when asked to issue; the ledger knows nothing.
type refusingIssuer struct{ t *testing.T }

func (r refusingIssuer) Issue(context.Context, device.IssueRequest) (*pki.Issued, error) {
	r.t.Error("Issue called")
	return nil, errors.New("no issuing here")
}
func (refusingIssuer) Lookup(context.Context, crypto.PublicKey) (*device.Known, error) {
	return nil, nil
}
func (refusingIssuer) Stored(context.Context, *x509.Certificate) error   { return nil }
func (refusingIssuer) Verified(context.Context, *x509.Certificate) error { return nil }
func (refusingIssuer) Roots() []*x509.Certificate                        { return nil }

func TestCommandOverrides(t *testing.T) {
	if _, err := acs.DefaultCommands.Override(map[string]string{"get_cert": "x"}); err == nil || !strings.Contains(err.Error(), "get_chain") {
		t.Errorf("unknown key: err = %v, want one listing the known keys", err)
	}
	if _, err := acs.DefaultCommands.Override(map[string]string{"set_cert": "ace set"}); err == nil || !strings.Contains(err.Error(), "{path}") {
		t.Errorf("set_cert without {path}: err = %v", err)
	}
	c, err := acs.DefaultCommands.Override(map[string]string{"factory_reset": "ace sys reset"})
	if err != nil || c.FactoryReset != "ace sys reset" || c.KeyGen != acs.DefaultCommands.KeyGen {
		t.Errorf("override: %+v, %v", c, err)
	}
}

// simCycle provisions one simulated device (modelling baud when non-zero) and returns the wall
// time, the bytes exchanged and the device's own processing time.
func simCycle(tb testing.TB, baud int) (time.Duration, console.Stats, time.Duration) {
	sb, err := simbench.Start(tb.TempDir(), simbench.Options{Devices: 1, Baud: baud, BootDelay: 10 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	defer sb.Close()
	st, err := station.Open(context.Background(), sb.Bench, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := acs.Open(ctx, &sb.Bench.Targets[0], "", nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if err := s.Sync(ctx); err != nil {
		tb.Fatal(err)
	}
	dev, err := sb.Device(sb.Bench.Targets[0].Name)
	if err != nil {
		tb.Fatal(err)
	}
	before, busy := s.Console().Stats(), dev.ProcessingTime()
	start := time.Now()
	if _, err := s.Provision(ctx, st.Issuer, device.Options{}); err != nil {
		tb.Fatal(err)
	}
	el := time.Since(start)
	after := s.Console().Stats()
	return el, console.Stats{TxBytes: after.TxBytes - before.TxBytes, RxBytes: after.RxBytes - before.RxBytes}, dev.ProcessingTime() - busy
}

// BenchmarkProvisionCycle: one full cycle against a simulator without line-rate modelling.
// ns/op includes starting the simulated device; cycle-s is the cycle alone.
func BenchmarkProvisionCycle(b *testing.B) {
	var total, busy time.Duration
	for b.Loop() {
		el, _, dev := simCycle(b, 0)
		total += el
		busy += dev
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "cycle-s")
	b.ReportMetric(busy.Seconds()/float64(b.N), "device-s")
	// Without a line rate, all but the device's time is the harness's (and the ptys').
	b.ReportMetric(100*(total-busy).Seconds()/total.Seconds(), "harness-overhead-%")
}

// BenchmarkProvisionCycle115200 reports a cycle's wall time against what no harness can take away
// at 115200 baud: the line time of the busier direction (11520 B/s each way; the simulator paces
// each direction on its own, and the shell's echo comes back while the command is still being
// sent) plus the device's own processing time, which the simulator measures. What is left is the
// harness's: harness-overhead-% of the wall time.
func BenchmarkProvisionCycle115200(b *testing.B) {
	var wall, line, busy time.Duration
	var bytes int64
	for b.Loop() {
		el, st, dev := simCycle(b, 115200)
		wall += el
		busy += dev
		line += time.Duration(float64(max(st.TxBytes, st.RxBytes)) / 11520 * float64(time.Second))
		bytes += st.TxBytes + st.RxBytes
	}
	n := float64(b.N)
	b.ReportMetric(float64(bytes)/n, "bytes/cycle")
	b.ReportMetric(line.Seconds()/n, "line-s")
	b.ReportMetric(busy.Seconds()/n, "device-s")
	b.ReportMetric(wall.Seconds()/n, "cycle-s")
	b.ReportMetric(wall.Seconds()/(line+busy).Seconds(), "x-bound")
	b.ReportMetric(100*(wall-line-busy).Seconds()/wall.Seconds(), "harness-overhead-%")
}

// A device opened while it boots (right after a power cycle) is waited for: the first command
// goes to its shell, not into its boot log.
func TestReadChainWaitsForABootingDevice(t *testing.T) {
	d, err := sim.Start(sim.Config{Name: "dut1", Dir: filepath.Join(t.TempDir(), "dut1"),
		Profile: "../../fixtures/profiles/device.conf", BootDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tg := &bench.Target{Name: "dut1", Family: bench.FamilyACS, Console: bench.Console{Port: d.PortPath(), Baud: 115200},
		ACS: &bench.ACSOptions{DataDir: d.DataDir(), CommandTimeout: 2 * time.Second, BootTimeout: 20 * time.Second}}
	if err := d.PowerOff(); err != nil {
		t.Fatal(err)
	}
	if err := d.PowerOn(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := acs.Open(ctx, tg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadChain(ctx); !errors.Is(err, device.ErrNoChain) {
		t.Fatalf("ReadChain on a booting device = %v, want ErrNoChain once it is up", err)
	}
}

// TestRestartUnderACommandIsNamed: a device that restarts while a command runs (power lost, a
// watchdog) never prints the command's end, only a new boot and a new prompt. The error says the
// device restarted, not that the shell refused the line. The command here prints a boot banner
// and replaces the shell with a new one, which is what the console sees of a reboot.
func TestRestartUnderACommandIsNamed(t *testing.T) {
	con := busybox(t)
	err := keyGenOnBusybox(t, con, "echo 'U-Boot SPL 2024.01 (Jan 08 2024)'; exec /bin/busybox sh -i")
	var se *device.StepError
	if !errors.As(err, &se) || se.Step != acs.StepKeyGen || !errors.Is(err, console.ErrNoStatus) ||
		!strings.Contains(err.Error(), "the device restarted while") {
		t.Fatalf("err = %v, want key_gen failing because the device restarted", err)
	}

	// A line the shell refuses without any restart is still told apart.
	err = keyGenOnBusybox(t, con, "if then")
	if !errors.Is(err, console.ErrNoStatus) || strings.Contains(err.Error(), "restarted") {
		t.Fatalf("err = %v, want the shell's refusal without a restart", err)
	}
}

package sim

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quiet reads for d and returns what arrived: for checks that nothing does.
func (c *console) quiet(d time.Duration) []byte {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := c.fill(); err != nil {
			break
		}
	}
	got := c.buf
	c.buf = nil
	return got
}

// atLeast reads until n bytes have arrived (or timeout), then until the line
// has been quiet for a moment, and returns all of it.
func (c *console) atLeast(n int, timeout time.Duration) []byte {
	deadline := time.Now().Add(timeout)
	for len(c.buf) < n && time.Now().Before(deadline) {
		if err := c.fill(); err != nil {
			break
		}
	}
	return c.quiet(200 * time.Millisecond) // keeps what c.buf already holds
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestPowerCutMidCommand(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	chain := provision(t, d, c, newPKI(t))

	c.mustRun("sleep 100 & true")
	c.write("sleep 5; echo DO''NE\n")
	if _, err := c.until(regexp.MustCompile(`sleep 5; echo DO''NE\r\n`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	shell := d.ShellPID()
	if err := d.PowerOff(); err != nil {
		t.Fatal(err)
	}
	if d.Powered() || d.ShellPID() != 0 {
		t.Errorf("after PowerOff: Powered=%v ShellPID=%d", d.Powered(), d.ShellPID())
	}
	if left := sessionMembers(shell); len(left) != 0 || !processGone(shell) {
		t.Errorf("processes of the device survive the power cut: %v", left)
	}
	// Input while off is lost; nothing is sent.
	marker := filepath.Join(d.DataDir(), "typed-while-off")
	c.write("touch " + marker + "\n")
	if got := c.quiet(300 * time.Millisecond); len(got) != 0 {
		t.Errorf("a powered-off device sent %q", got)
	}
	if err := d.Reboot(); !errors.Is(err, ErrPoweredOff) {
		t.Errorf("Reboot while off = %v, want ErrPoweredOff", err)
	}

	if err := d.PowerOn(); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	out := c.mustRun("echo up")
	if out != "up\n" {
		t.Errorf("echo after power on = %q", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("input typed while off was executed")
	}
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain after power cut differs")
	}
	if strings.Contains(string(c.quiet(50*time.Millisecond)), "DONE") {
		t.Errorf("the interrupted command finished after all")
	}
	if d.Boots() != 2 {
		t.Errorf("Boots = %d, want 2", d.Boots())
	}
}

func TestInterruptedCommitIsDroppedAtBoot(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	chain := provision(t, d, c, newPKI(t))
	// What a power cut between write and rename leaves behind.
	stale := filepath.Join(d.DHADir(), ".dha_chain.pem.4242.tmp")
	if err := os.WriteFile(stale, []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.PowerOff(); err != nil {
		t.Fatal(err)
	}
	if err := d.PowerOn(); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("stale temp file survived the boot")
	}
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain differs after recovery")
	}
}

func TestPortReopenAndShellRespawn(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	c.mustRun("X=kept")

	// The harness closing its port changes nothing for the device.
	c.port.Close()
	c = openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	if out := c.mustRun("echo $X"); out != "kept\n" {
		t.Errorf("shell state after port reopen = %q, want kept", out)
	}

	// exit: init respawns the console shell, no reboot.
	old := d.ShellPID()
	c.write("exit\n")
	if _, err := c.until(regexp.MustCompile(`built-in shell \(ash\)`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(5 * time.Second)
	if d.ShellPID() == old || d.ShellPID() == 0 {
		t.Errorf("shell pid %d after exit, old %d", d.ShellPID(), old)
	}
	if out := c.mustRun("echo ${X:-gone}"); out != "gone\n" {
		t.Errorf("respawned shell has old state: %q", out)
	}
	if d.Boots() != 1 {
		t.Errorf("Boots = %d after a respawn, want 1", d.Boots())
	}
}

func TestRestartKeepsProvisioningAndLocksDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dut1")
	cfg := Config{Name: "dut1", Dir: dir, Profile: profilePath, BootDelay: -1}
	d, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Start on a running Dir: %v, want 'in use'", err)
	}
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	chain := provision(t, d, c, newPKI(t))
	if err := d.SetFault(FaultChainCorrupt, true); err != nil {
		t.Fatal(err)
	}
	shell := d.ShellPID()
	c.port.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !processGone(shell) {
		t.Errorf("shell %d survives Close", shell)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "dut1.pem")); err != nil {
		t.Errorf("Close removed data: %v", err)
	}

	d, err = Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c = openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain after simulator restart differs (faults must be cleared by Start)")
	}
}

func TestCloseLeavesNothingRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	c.mustRun("sleep 100 & true")
	shell := d.ShellPID()
	c.port.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if left := sessionMembers(shell); len(left) != 0 || !processGone(shell) {
		t.Errorf("processes left after Close: %v", left)
	}
	if err := d.PowerOn(); !errors.Is(err, ErrClosed) {
		t.Errorf("PowerOn after Close = %v, want ErrClosed", err)
	}
	// serial's own goroutines end with its Close; allow the runtime a moment.
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before Start, %d after Close", before, n)
	}
}

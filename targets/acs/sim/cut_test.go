package sim

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/targets/simpower"
)

// waitPowered waits until the device's power is on (want) or off.
func waitPowered(t *testing.T, d *Device, want bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for d.Powered() != want {
		if time.Now().After(deadline) {
			t.Fatalf("power still %v after %v, want %v", d.Powered(), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestArmedCutLosesTheByteItFallsOn: a cut armed at byte n of what is typed into the shell lets n
// bytes through and takes the rest with the power: a command whose newline is cut off never runs;
// the power comes back after the restore time and the device boots.
func TestArmedCutLosesTheByteItFallsOn(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	marker := filepath.Join(d.DataDir(), "cut-before-newline")
	line := "touch " + marker + "\n"
	if err := d.ArmPowerCut(PowerCut{Phase: CutUpload, AtByte: len(line) - 1, RestoreAfter: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	c.write(line)
	waitPowered(t, d, false, 5*time.Second)
	waitPowered(t, d, true, 5*time.Second)
	c.sync(10 * time.Second)
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although the cut took its newline")
	}
	// Disarmed once fired: the same line now runs.
	c.mustRun(strings.TrimSuffix(line, "\n"))
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("after the cut: %v", err)
	}
}

// TestCutInAnotherPhaseDoesNotFire: bytes typed into the shell do not count towards a flash cut.
func TestCutInAnotherPhaseDoesNotFire(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	if err := d.ArmPowerCut(PowerCut{Phase: CutFlash, AtByte: 0}); err != nil {
		t.Fatal(err)
	}
	c.mustRun("echo typed, not flashed")
	if !d.Powered() {
		t.Fatal("a flash cut fired on shell input")
	}
	if err := d.ArmPowerCut(PowerCut{Phase: "commit"}); err == nil {
		t.Error("an ACK module's phase was accepted")
	}
}

// TestFaultRequestsOnThePowerSocket: the soak's requests, as its client sends them.
func TestFaultRequestsOnThePowerSocket(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	ps, err := d.ServePower()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	ask := func(line string) string {
		conn, err := net.Dial("unix", ps.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintln(conn, line)
		answer, _ := bufio.NewReader(conn).ReadString('\n')
		return strings.TrimSpace(answer)
	}
	for _, tc := range []struct{ req, want string }{
		{"fault noise 0.5", "ok on"},
		{"fault clear", "ok on"},
		{"fault noise 2", "err fault noise: rate \"2\" is not a number from 0 to 1"},
		{"fault cut sideways 1 0", "err fault cut: unknown phase \"sideways\" (want upload, commit, flash or any)"},
		{"fault cut commit 1 0", "err sim: power cut phase \"commit\": want upload, flash or any"},
		{"fault", "err fault: want noise RATE, cut PHASE BYTE RESTORE_MS, reenumerate or clear"},
	} {
		if got := ask(tc.req); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.req, got, tc.want)
		}
	}
	if got := ask("fault cut any 3 200"); got != "ok on" {
		t.Fatalf("arming: %q", got)
	}
	c.write("echo after the cut\n")
	waitPowered(t, d, false, 5*time.Second)
	waitPowered(t, d, true, 5*time.Second)
	c.sync(10 * time.Second)
}

func TestParseFault(t *testing.T) {
	t.Parallel()
	for _, line := range []string{"noise 0.0001", "cut flash 1024 200", "cut any 0 0", "clear", "reenumerate"} {
		f, err := simpower.ParseFault(strings.Fields(line))
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if got := f.String(); got != "fault "+line {
			t.Errorf("%q reads back as %q", line, got)
		}
	}
	for _, line := range []string{"noise", "noise -1", "cut any -1 0", "cut any 1 600000000", "cut any x 0", "clear now", "reenumerate 2", "storm"} {
		if _, err := simpower.ParseFault(strings.Fields(line)); err == nil {
			t.Errorf("%q accepted", line)
		}
	}
}

// TestReenumerateMovesThePort: the port the harness has open goes dead, the stable port name
// points to a new pseudo-terminal, and the device answers there with its storage intact.
func TestReenumerateMovesThePort(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	c.mustRun("echo kept > " + filepath.Join(d.DataDir(), "kept"))
	before := d.PortName()
	if err := d.Reenumerate(); err != nil {
		t.Fatal(err)
	}
	after := d.PortName()
	if after == before {
		t.Fatalf("still on %s", before)
	}
	if target, err := os.Readlink(d.PortPath()); err != nil || target != after {
		t.Errorf("%s -> %q (%v), want %s", d.PortPath(), target, err, after)
	}
	// The old port is hung up: writes fail (EIO), reads see nothing more.
	if _, err := c.port.Write([]byte("echo stale\n")); err == nil {
		buf := make([]byte, 64)
		if n, err := c.port.Read(buf); err == nil && n > 0 {
			t.Errorf("the old port still carries %q", buf[:n])
		}
	}
	c2 := openConsole(t, d, 115200) // found again by its stable name
	c2.sync(10 * time.Second)
	if out := c2.mustRun("cat " + filepath.Join(d.DataDir(), "kept")); !strings.Contains(out, "kept") {
		t.Errorf("after re-enumeration: %q", out)
	}
}

package lockfile

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAcquireNamesTheHolderAndReleaseFrees(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	l, err := Acquire(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(p)
	var he *HeldError
	if !errors.As(err, &he) || he.Holder.PID != os.Getpid() || !strings.Contains(err.Error(), fmt.Sprintf("pid %d (", os.Getpid())) {
		t.Fatalf("second Acquire = %v; want a *HeldError naming this process", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	l2, err := Acquire(p)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

func TestUUCP(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "LCK..ttyS0")
	if _, err := CreateUUCP(p); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != fmt.Sprintf("%10d\n", os.Getpid()) {
		t.Errorf("LCK file %q", b)
	}
	if err := RemoveUUCP(p); err != nil {
		t.Fatal(err)
	}
	// A binary pid (Kermit), alive: honoured.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	pid := uint32(sleeper.Process.Pid)
	// Start returns once exec has begun, a moment before the kernel has the new command line
	// (/proc/PID/cmdline is empty until then).
	for deadline := time.Now().Add(10 * time.Second); Command(int(pid)) != "sleep 30" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	os.WriteFile(p, []byte{byte(pid), byte(pid >> 8), byte(pid >> 16), byte(pid >> 24)}, 0o644)
	_, err := CreateUUCP(p)
	var he *HeldError
	if !errors.As(err, &he) || he.Holder.PID != int(pid) || he.Holder.Command != "sleep 30" {
		t.Fatalf("CreateUUCP over a live binary pid = %v", err)
	}
	// Garbage: stale, replaced.
	os.WriteFile(p, []byte("garbage"), 0o644)
	if _, err := CreateUUCP(p); err != nil {
		t.Fatalf("CreateUUCP over garbage: %v", err)
	}
	// Another process's file is not removed by RemoveUUCP.
	os.WriteFile(p, []byte(fmt.Sprintf("%10d\n", pid)), 0o644)
	RemoveUUCP(p)
	if _, err := os.Stat(p); err != nil {
		t.Errorf("RemoveUUCP removed another process's lock: %v", err)
	}
}

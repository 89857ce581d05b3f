package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/link"
	"hilbench/harness/station"
	"hilbench/targets/simbench"
)

// Two `hil provision` signing directly on one bench: the second fails at start, at once, naming
// the first (the signer state has one owner); the first provisions every device.
func TestSecondProvisionOnOneBenchFailsFast(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 2, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := hilProc(ctx, "provision", "--bench", sb.BenchFile, "--all")
	var firstOut strings.Builder
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the first owns the state (its pid in the lock file).
	lockFile := filepath.Join(station.StateDir(sb.Bench), station.StateLockFile)
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(lockFile); strings.HasPrefix(string(b), fmt.Sprintf("%d\n", first.Process.Pid)) {
			break
		}
		if i > 400 {
			first.Process.Kill()
			first.Wait()
			t.Fatalf("the first provision never owned %s:\n%s", lockFile, firstOut.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	start := time.Now()
	out, err := hilRun(ctx, "provision", "--bench", sb.BenchFile, "--all")
	took := time.Since(start)
	want := fmt.Sprintf("is owned by pid %d (", first.Process.Pid)
	if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "provision --bench") {
		t.Errorf("second provision: %v\n%s\nwant a failure saying %q ... provision --bench", err, out, want)
	}
	if took > 10*time.Second {
		t.Errorf("the second provision took %s to fail, want at once", took)
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first provision: %v\n%s", err, firstOut.String())
	}
}

// A console port another process holds (minicom, another hil): provisioning that target fails
// at once saying which process holds it.
func TestProvisionRefusesAPortInUse(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 1, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	port := sb.Bench.Targets[0].Console.Port
	// This test process holds the port, as a terminal program would.
	p, err := link.Open(context.Background(), link.Config{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := hilRun(ctx, "provision", "--bench", sb.BenchFile, "--all")
	took := time.Since(start)
	real, rerr := filepath.EvalSymlinks(port)
	if rerr != nil {
		t.Fatal(rerr)
	}
	want := fmt.Sprintf("port %s is in use by pid %d (%s", real, os.Getpid(), filepath.Base(os.Args[0]))
	if err == nil || !strings.Contains(out, want) {
		t.Errorf("provision with the port held: %v\n%s\nwant %q", err, out, want)
	}
	if took > 15*time.Second {
		t.Errorf("provision took %s to give up on a port in use, want at once", took)
	}
	p.Close()
	if out, err := hilRun(ctx, "provision", "--bench", sb.BenchFile, "--all"); err != nil {
		t.Errorf("provision once the port was released: %v\n%s", err, out)
	}
}

// Two `hil signer serve` on one state directory with different sockets: the second fails at
// start naming the first, and nothing of the first is disturbed.
func TestSecondSignerServeOnOneStateDirFails(t *testing.T) {
	sb, err := simbench.Start(t.TempDir(), simbench.Options{Devices: 1, BootDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sockDir, err := os.MkdirTemp("", "hil-agent-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	benchWithSocket := func(name string) string {
		b := *sb.Bench
		b.Signer.StateDir = filepath.Join(sb.Dir, "state")
		b.Signer.Socket = filepath.Join(sockDir, name+".sock")
		f := filepath.Join(sb.Dir, name+".yaml")
		if err := b.Write(f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	first, second := benchWithSocket("a"), benchWithSocket("b")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serve := hilProc(ctx, "signer", "serve", "--bench", first)
	var serveOut strings.Builder
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { serve.Process.Kill(); serve.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(sockDir, "a.sock")); err == nil {
			break
		}
		if i > 400 {
			t.Fatalf("the first agent did not start:\n%s", serveOut.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	out, err := hilRun(ctx, "signer", "serve", "--bench", second)
	want := fmt.Sprintf("signer state %s is owned by pid %d (", filepath.Join(sb.Dir, "state"), serve.Process.Pid)
	if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "signer serve --bench "+first) {
		t.Errorf("second signer serve: %v\n%s\nwant %q ... signer serve --bench %s", err, out, want, first)
	}
	if _, err := os.Stat(filepath.Join(sockDir, "b.sock")); err == nil {
		t.Errorf("the refused agent left a socket")
	}
	if out, err := hilRun(ctx, "signer", "status", "--bench", first); err != nil {
		t.Errorf("the first agent after the refusal: %v\n%s", err, out)
	}
}

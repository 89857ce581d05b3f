package ack_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/targets/ack"
)

// script writes an sh script into dir and returns its path.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "tool.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func externalConfig(tool string) ack.ExternalConfig {
	return ack.ExternalConfig{
		Command:         []string{tool, "--port={port}", "{product_config}", "--pin", "{pin_file}", "{target}/{dsn}"},
		SuccessPatterns: []*regexp.Regexp{regexp.MustCompile(`^Provisioning complete`)},
		FailurePatterns: []*regexp.Regexp{regexp.MustCompile(`FAILED|(?i)error`)},
		Timeout:         10 * time.Second,
	}
}

func externalParams(dir string) ack.ExternalParams {
	pin := filepath.Join(dir, "pin")
	os.WriteFile(pin, []byte("80417315\n"), 0o600)
	return ack.ExternalParams{Target: "dut1", Port: "/dev/ttyUSB7", ProductConfig: "/etc/product.conf", PINFile: pin, DSN: "G0X1234"}
}

func TestExternalSuccess(t *testing.T) {
	dir := t.TempDir()
	tool := script(t, dir, `for a in "$@"; do echo "arg: $a"; done
echo "connecting to $1" >&2
echo "Provisioning complete"
`)
	var buf bytes.Buffer
	tr := console.NewTranscript(&buf, nil)
	p := externalParams(dir)
	res, err := ack.RunExternal(context.Background(), externalConfig(tool), p, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	wantArgv := []string{tool, "--port=/dev/ttyUSB7", "/etc/product.conf", "--pin", p.PINFile, "dut1/G0X1234"}
	if strings.Join(res.Argv, " ") != strings.Join(wantArgv, " ") || res.Matched != "Provisioning complete" {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{`vendor-tool < "arg: --port=/dev/ttyUSB7\n"`, `"arg: dut1/G0X1234\n"`, `"connecting to --port=/dev/ttyUSB7\n"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("transcript lacks %s:\n%s", want, buf.String())
		}
	}
}

func TestExternalFailures(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"failure line with exit 0": {"echo 'Provisioning complete'\necho 'step 3: FAILED to write'\n", `printed a failure line: "step 3: FAILED to write"`},
		"exit 1":                   {"echo 'Provisioning complete'\necho 'no module' >&2\nexit 1\n", "exit status 1"},
		"no success line":          {"echo 'done'\n", "no line matching a success pattern"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ack.RunExternal(context.Background(), externalConfig(script(t, dir, tc.body)), externalParams(dir), nil, nil)
			var se *device.StepError
			if !errors.As(err, &se) || se.Step != ack.StepExternal || !errors.Is(err, ack.ErrExternalFailed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestExternalTemplateErrors(t *testing.T) {
	if _, err := ack.ExpandCommand([]string{"tool", "{dsn}"}, ack.ExternalParams{}); err == nil || !strings.Contains(err.Error(), "{dsn}") {
		t.Errorf("empty dsn: %v", err)
	}
	if _, err := ack.ExpandCommand(nil, ack.ExternalParams{}); err == nil {
		t.Error("empty command accepted")
	}
	argv, err := ack.ExpandCommand([]string{"sh", "-c", "awk '{print}' {port}"}, ack.ExternalParams{Port: "/dev/x"})
	if err != nil || argv[2] != "awk '{print}' /dev/x" {
		t.Errorf("argv %q err %v", argv, err)
	}
	cfg := externalConfig("true")
	cfg.SuccessPatterns = nil
	if _, err := ack.RunExternal(context.Background(), cfg, externalParams(t.TempDir()), nil, nil); err == nil || !strings.Contains(err.Error(), "success patterns") {
		t.Errorf("no success patterns: %v", err)
	}
}

func TestExternalTimeoutKillsTheGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	tool := script(t, dir, "trap '' TERM\nsleep 60 &\necho $! > "+pidFile+"\necho working\nwait\n")
	cfg := externalConfig(tool)
	cfg.Timeout = 300 * time.Millisecond
	cfg.KillGrace = 200 * time.Millisecond // the tool ignores SIGTERM: SIGKILL must follow
	start := time.Now()
	_, err := ack.RunExternal(context.Background(), cfg, externalParams(dir), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "killed after 300ms") || !strings.Contains(err.Error(), "working") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	deadline := time.Now().Add(3 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the tool's child %d survived", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestExternalNeverShowsThePIN(t *testing.T) {
	dir := t.TempDir()
	tool := script(t, dir, `echo "using pin file $3"
echo "pin is $(cat "$3")"
echo "FAILED: wrong pin $(cat "$3")" >&2
`)
	cfg := externalConfig(tool)
	cfg.Command = []string{tool, "a", "b", "{pin_file}"} // the tool prints what is in $3
	var buf bytes.Buffer
	tr := console.NewTranscript(&buf, nil)
	p := externalParams(dir)
	_, err := ack.RunExternal(context.Background(), cfg, p, tr, nil)
	tr.Close()
	if err == nil {
		t.Fatal("the failure line was not noticed")
	}
	for where, s := range map[string]string{"error": err.Error(), "transcript": buf.String()} {
		if strings.Contains(s, "80417315") {
			t.Errorf("the PIN is in the %s:\n%s", where, s)
		}
		if !strings.Contains(s, "[REDACTED]") {
			t.Errorf("the %s does not show the redaction:\n%s", where, s)
		}
	}
	if !strings.Contains(buf.String(), p.PINFile) {
		t.Error("the PIN file's path is not in the transcript")
	}
}

func TestExternalCancelAndLeftovers(t *testing.T) {
	dir := t.TempDir()
	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := ack.RunExternal(c, externalConfig(script(t, dir, "sleep 60\n")), externalParams(dir), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "killed: context deadline exceeded") {
		t.Fatalf("cancelled: %v", err)
	}

	// A tool that exits 0 but leaves a child holding its output (and the port) behind.
	pidFile := filepath.Join(dir, "child.pid")
	tool := script(t, dir, "sleep 60 &\necho $! > "+pidFile+"\necho 'Provisioning complete'\n")
	start := time.Now()
	if _, err := ack.RunExternal(context.Background(), externalConfig(tool), externalParams(dir), nil, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("waited %v for the leftover child", d)
	}
	raw, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	deadline := time.Now().Add(3 * time.Second)
	for pid > 0 && alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("leftover child %d survived", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

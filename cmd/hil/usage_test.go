package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// leafCommands are every command that has a flag set of its own.
var leafCommands = [][]string{
	{"sim"}, {"sim", "image"}, {"sim", "yubikey"},
	{"provision"}, {"verify"}, {"dak", "init"}, {"flash"}, {"sign"}, {"station"}, {"soak"},
	{"yubikey", "list"}, {"yubikey", "status"}, {"yubikey", "unblock"}, {"yubikey", "change-pin"},
	{"yubikey", "set-retries"}, {"yubikey", "init-dak"}, {"yubikey", "import-cert"},
	{"signer", "serve"}, {"signer", "status"},
	{"power", "on"}, {"power", "off"}, {"power", "cycle"}, {"power", "state"},
	{"ledger", "list"}, {"ledger", "show"}, {"ledger", "export"}, {"ledger", "check"}, {"ledger", "import"},
	{"labels"}, {"control-log"}, {"reconcile"},
}

// groups are the commands that take a command, with the commands they take.
var groups = map[string][]string{
	"dak":     {"init"},
	"yubikey": yubikeyCommands,
	"signer":  {"serve", "status"},
	"power":   {"on", "off", "cycle", "state"},
	"ledger":  ledgerCommands,
	"sim":     {"image", "yubikey"},
}

func runArgs(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestHelpOnEveryCommand: -h and --help print the command's own usage on stdout and succeed.
func TestHelpOnEveryCommand(t *testing.T) {
	for _, cmd := range leafCommands {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, cmd...), h)
			out, errOut, err := runArgs(args...)
			if err != nil {
				t.Errorf("hil %s: %v", strings.Join(args, " "), err)
				continue
			}
			if want := "Usage: hil " + strings.Join(cmd, " ") + " "; !strings.HasPrefix(out, want) {
				t.Errorf("hil %s: stdout %q, want it to start with %q", strings.Join(args, " "), out, want)
			}
			if errOut != "" {
				t.Errorf("hil %s: stderr %q", strings.Join(args, " "), errOut)
			}
		}
	}
	for group, cmds := range groups {
		if group == "sim" {
			continue // hil sim --help is the leaf above
		}
		out, _, err := runArgs(group, "--help")
		if err != nil || !strings.Contains(out, "hil "+group+" "+cmds[0]) {
			t.Errorf("hil %s --help: %v, stdout %q", group, err, out)
		}
	}
	for _, h := range []string{"-h", "--help", "help"} {
		out, _, err := runArgs(h)
		if err != nil || !strings.Contains(out, "Exit status:") {
			t.Errorf("hil %s: %v, stdout %q", h, err, out)
		}
	}
	// Each yubikey command lists its own flags only.
	out, _, _ := runArgs("yubikey", "status", "--help")
	if !strings.Contains(out, "-serial") || strings.Contains(out, "-pin-tries") || strings.Contains(out, "-cn") {
		t.Errorf("hil yubikey status --help:\n%s", out)
	}
}

// TestUnknownCommandsAndFlags: a usage error names what was wrong and lists what is valid.
func TestUnknownCommandsAndFlags(t *testing.T) {
	_, _, err := runArgs("frobnicate")
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `"frobnicate"`) || !strings.Contains(err.Error(), "provision, verify") {
		t.Errorf("hil frobnicate: %v", err)
	}
	for group, cmds := range groups {
		_, _, err := runArgs(group, "frobnicate")
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `"frobnicate"`) || !strings.Contains(err.Error(), strings.Join(cmds, ", ")) {
			t.Errorf("hil %s frobnicate: %v, want a usage error naming it and listing %v", group, err, cmds)
		}
		if group == "sim" {
			continue
		}
		_, _, err = runArgs(group)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), strings.Join(cmds, ", ")) {
			t.Errorf("hil %s: %v, want a usage error listing %v", group, err, cmds)
		}
	}
	for _, cmd := range leafCommands {
		args := append(append([]string{}, cmd...), "--frobnicate")
		_, _, err := runArgs(args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "unknown flag -frobnicate") || !strings.Contains(err.Error(), "flags: --") {
			t.Errorf("hil %s: %v, want a usage error naming the flag and listing the valid ones", strings.Join(args, " "), err)
		}
	}
}

// TestYubiKeyCommandsHaveTheirOwnFlags: the cases, and a flag of another command refused.
func TestYubiKeyCommandsHaveTheirOwnFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"yubikey", "status", "--pin-tries", "9", "--cn", "x"}, "unknown flag -pin-tries"},
		{[]string{"yubikey", "list", "--serial", "1"}, "unknown flag -serial"},
		{[]string{"yubikey", "import-cert", "--serial", "1", "--replace"}, "unknown flag -replace"},
		{[]string{"yubikey", "status"}, "--serial is required"},
		{[]string{"yubikey", "frobnicate"}, `unknown yubikey command "frobnicate"`},
	} {
		_, _, err := runArgs(c.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("hil %s: %v, want a usage error saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestExitStatuses runs the real main (TestMain's HIL_RUN_MAIN re-exec): 0 success and help,
// 1 a failed run, 2 usage.
func TestExitStatuses(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"yubikey", "--help"}, 0},
		{[]string{"yubikey", "status", "-h"}, 0},
		{[]string{"ledger", "list", "--help"}, 0},
		{[]string{}, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"yubikey", "frobnicate"}, 2},
		{[]string{"yubikey", "status", "--pin-tries", "9"}, 2},
		{[]string{"provision", "--bench", "x.yaml"}, 2},
		{[]string{"verify", "--frobnicate"}, 2},
		{[]string{"provision", "--bench", "/nonexistent/bench.yaml", "--all"}, 1},
		{[]string{"ledger", "check", "--bench", "/nonexistent/bench.yaml"}, 1},
	} {
		cmd := hilProc(context.Background(), c.args...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code {
			t.Errorf("hil %s: exit status %d, want %d (stderr %q)", strings.Join(c.args, " "), code, c.code, errOut.String())
		}
		if c.code == 0 && !strings.Contains(out.String(), "Usage") && !strings.Contains(out.String(), "hil ") {
			t.Errorf("hil %s: stdout %q", strings.Join(c.args, " "), out.String())
		}
		if c.code == 2 && !strings.HasPrefix(errOut.String(), "hil") {
			t.Errorf("hil %s: stderr %q", strings.Join(c.args, " "), errOut.String())
		}
	}
}

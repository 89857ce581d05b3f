package power

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// relay writes a small relay-board script: `relay.sh PORT on|off|state`, one state file per port.
func relay(t *testing.T) (script, dir string) {
	t.Helper()
	dir = t.TempDir()
	script = filepath.Join(dir, "relay.sh")
	body := `#!/bin/sh
f="` + dir + `/relay-$1"
case "$2" in
on|off) echo "$2" > "$f"; echo "$2" >> "` + dir + `/log";;
state) echo "relay $1 is $(cat "$f" 2>/dev/null || echo unset)";;
*) echo "relay: bad command $2" >&2; exit 2;;
esac
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestCommandOnOffState(t *testing.T) {
	script, dir := relay(t)
	p, err := Open(Config{Type: "command", Port: 3, On: script + " {port} on", Off: script + " {port} off", State: script + " {port} state"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, want := range []State{On, Off, On} {
		var err error
		if want == On {
			err = p.On(ctx)
		} else {
			err = p.Off(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(dir, "relay-3")); got != want.String() {
			t.Fatalf("state file %q, want %s", got, want)
		}
		if s, err := p.State(ctx); err != nil || s != want {
			t.Fatalf("State %v %v, want %s", s, err, want)
		}
	}
}

func TestCommandStateOptional(t *testing.T) {
	p, err := NewCommand(Config{On: "true", Off: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := p.State(context.Background()); err != nil || s != Unknown {
		t.Fatalf("State %v %v, want unknown", s, err)
	}
}

func TestCommandStatePatterns(t *testing.T) {
	mk := func(out string) *Command {
		c, err := NewCommand(Config{On: "true", Off: "true", State: "echo '" + out + "'", OnPattern: `^1$`, OffPattern: `^0$`})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	if s, err := mk("1").State(ctx); s != On || err != nil {
		t.Errorf("1: %v %v", s, err)
	}
	if s, err := mk("0").State(ctx); s != Off || err != nil {
		t.Errorf("0: %v %v", s, err)
	}
	if s, err := mk("maybe").State(ctx); s != Unknown || err == nil || !strings.Contains(err.Error(), `output "maybe" matches neither`) {
		t.Errorf("maybe: %v %v", s, err)
	}
	if _, err := NewCommand(Config{On: "true", Off: "true", State: "true", OnPattern: "("}); err == nil {
		t.Error("bad pattern accepted")
	}
}

func TestCommandCycle(t *testing.T) {
	script, dir := relay(t)
	c, err := NewCommand(Config{Port: 1, On: script + " {port} on", Off: script + " {port} off", OffTime: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		if got := readFile(t, filepath.Join(dir, "relay-1")); got != "off" {
			t.Errorf("during the off time the relay is %q", got)
		}
		return nil
	}
	if err := c.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "log")); got != "off\non" || len(slept) != 1 || slept[0] != 1500*time.Millisecond {
		t.Fatalf("log %q, slept %v", got, slept)
	}

	// A cycle template replaces off+wait+on.
	c, err = NewCommand(Config{Port: 1, On: "false", Off: "false", Cycle: script + " {port} on"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCommandFailureShowsOutput(t *testing.T) {
	script, _ := relay(t)
	c, err := NewCommand(Config{Port: 2, On: script + " {port} sideways", Off: "true"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.On(context.Background())
	if err == nil || !strings.Contains(err.Error(), "relay: bad command sideways") || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("error %v", err)
	}
}

func TestCommandTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	c, err := NewCommand(Config{On: "sleep 60 & echo $! > " + pidFile + "; wait", Off: "true", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = c.On(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms (process group killed)") {
		t.Fatalf("error %v", err)
	}
	pid, err := strconv.Atoi(readFile(t, pidFile))
	if err != nil {
		t.Fatal(err)
	}
	// The background sleep was in the group: it goes (or turns zombie) once the kill lands.
	alive := func() string {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if f := strings.Fields(string(stat)); err == nil && len(f) > 2 && f[2] != "Z" {
			return f[2]
		}
		return ""
	}
	for i := 0; i < 100 && alive() != ""; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if st := alive(); st != "" {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("grandchild %d survived the timeout (state %s)", pid, st)
	}
}

func TestCommandTargetIsQuoted(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	c, err := NewCommand(Config{On: "printf '%s' {target} > " + out, Off: "true", Target: "board 1; rm -rf /"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.On(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); got != "board 1; rm -rf /" {
		t.Fatalf("target arrived as %q", got)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, cfg := range []Config{{Type: "relay"}, {Type: "command", On: "x"}, {Type: "sim"}, {Type: "usb-hub"}} {
		if _, err := Open(cfg); err == nil {
			t.Errorf("%+v opened", cfg)
		}
	}
	_, err := Open(Config{Type: "command", On: "true", Off: "true", Timeout: -1})
	if err == nil {
		t.Error("negative timeout accepted")
	}
}

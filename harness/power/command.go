package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Command switches power with external commands (relay boards, PDUs), run with `sh -c`.
type Command struct {
	on, off, cycle, state string
	onRE, offRE           *regexp.Regexp
	offTime, timeout      time.Duration
	sleep                 func(context.Context, time.Duration) error
}

// NewCommand checks cfg (On and Off are required) and expands {port} and {target}.
func NewCommand(cfg Config) (*Command, error) {
	if cfg.On == "" || cfg.Off == "" {
		return nil, errors.New("power command: both the on and the off command are required")
	}
	r := strings.NewReplacer("{port}", strconv.Itoa(cfg.Port), "{target}", shellQuote(cfg.Target))
	c := &Command{on: r.Replace(cfg.On), off: r.Replace(cfg.Off), cycle: r.Replace(cfg.Cycle),
		state: r.Replace(cfg.State), offTime: orDefault(cfg.OffTime, DefaultOffTime),
		timeout: orDefault(cfg.Timeout, DefaultTimeout), sleep: sleep}
	if c.state != "" {
		var err error
		if c.onRE, err = compile("on", cfg.OnPattern, `(?i)\bon\b`); err != nil {
			return nil, err
		}
		if c.offRE, err = compile("off", cfg.OffPattern, `(?i)\boff\b`); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func compile(what, pattern, def string) (*regexp.Regexp, error) {
	if pattern == "" {
		pattern = def
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("power command: %s pattern %q: %w", what, pattern, err)
	}
	return re, nil
}

// shellQuote quotes s for sh unless it is plainly safe.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,:/@%+=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run runs line under sh in its own process group, killed whole on timeout.
func (c *Command) run(ctx context.Context, what, line string) (string, error) {
	timeout := c.timeout
	if what == "cycle" {
		timeout += c.offTime // the cycle command waits the off time itself
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second // a grandchild holding the output pipe does not hang us
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v (process group killed)", timeout)
		}
		if text == "" {
			text = "(no output)"
		}
		return text, fmt.Errorf("power %s: %q: %w; output: %s", what, line, err, text)
	}
	return text, nil
}

// On runs the on command.
func (c *Command) On(ctx context.Context) error {
	_, err := c.run(ctx, "on", c.on)
	return err
}

// Off runs the off command.
func (c *Command) Off(ctx context.Context) error {
	_, err := c.run(ctx, "off", c.off)
	return err
}

// Cycle runs the cycle command, or off, the off time, on.
func (c *Command) Cycle(ctx context.Context) error {
	if c.cycle != "" {
		_, err := c.run(ctx, "cycle", c.cycle)
		return err
	}
	if err := c.Off(ctx); err != nil {
		return err
	}
	if err := c.sleep(ctx, c.offTime); err != nil {
		return fmt.Errorf("power cycle: left off: %w", err)
	}
	return c.On(ctx)
}

// State runs the state command and matches its output; Unknown without a state command.
func (c *Command) State(ctx context.Context) (State, error) {
	if c.state == "" {
		return Unknown, nil
	}
	out, err := c.run(ctx, "state", c.state)
	if err != nil {
		return Unknown, err
	}
	on, off := c.onRE.MatchString(out), c.offRE.MatchString(out)
	switch {
	case on && !off:
		return On, nil
	case off && !on:
		return Off, nil
	case on && off:
		return Unknown, fmt.Errorf("power state: output %q matches both %q and %q", out, c.onRE, c.offRE)
	}
	return Unknown, fmt.Errorf("power state: output %q matches neither %q nor %q", out, c.onRE, c.offRE)
}

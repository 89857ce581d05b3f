package acs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/harness/link"
	"hilbench/targets/internal/benchpower"
)

// ConfigFromBench turns a bench target into a driver config (defaults for what it leaves out).
func ConfigFromBench(t *bench.Target) (Config, error) {
	cfg := Config{Name: t.Name, Commands: DefaultCommands}
	if o := t.ACS; o != nil {
		if o.Prompt != "" {
			re, err := regexp.Compile(o.Prompt)
			if err != nil {
				return cfg, fmt.Errorf("target %s: acs.prompt: %w", t.Name, err)
			}
			cfg.Prompt = re
		}
		cfg.DataDir = o.DataDir
		cfg.BootTimeout = o.BootTimeout
		cfg.CommandTimeout = o.CommandTimeout
		cmds, err := DefaultCommands.Override(o.Commands)
		if err != nil {
			return cfg, fmt.Errorf("target %s: %w", t.Name, err)
		}
		cfg.Commands = cmds
	}
	return cfg.WithDefaults(), nil
}

// FlashConfigFromBench turns a bench target's flash section (method ymodem) into the flash
// settings. Entering the bootloader by boot strap runs the bench's strap commands (sh -c,
// {target} substituted) and cycles power through powerCycle.
func FlashConfigFromBench(t *bench.Target, powerCycle func(context.Context) error) (FlashConfig, error) {
	f := t.Flash
	if f == nil || f.Method != bench.MethodYModem {
		return FlashConfig{}, fmt.Errorf("target %s: %w: no flash section with method ymodem", t.Name, device.ErrUnsupported)
	}
	cfg := FlashConfig{
		EnterCommand: f.EnterCommand, LoadCommand: f.LoadCommand, BootCommand: f.BootCommand,
		VersionCommand: f.VersionCommand, Timeout: f.Timeout, PowerCycle: powerCycle,
	}
	if f.Prompt != "" {
		re, err := regexp.Compile(f.Prompt)
		if err != nil {
			return cfg, fmt.Errorf("target %s: flash.prompt: %w", t.Name, err)
		}
		cfg.Prompt = re
	}
	if f.Enter == bench.EnterStrap {
		cfg.Strap = func(ctx context.Context, on bool) error {
			cmd := f.StrapOff
			if on {
				cmd = f.StrapOn
			}
			return runHostCommand(ctx, t.Name, cmd)
		}
	}
	return cfg, nil
}

// runHostCommand runs a bench-file command on the station (sh -c) and names it when it fails.
func runHostCommand(ctx context.Context, target, command string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(command, "{target}", target))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %w: %s", command, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// LinkConfig is the serial configuration of a bench target's console.
func LinkConfig(t *bench.Target) link.Config { return link.ConfigFromBench(t.Console) }

// Session is an open device: its port, console, transcript, driver, and the bench's flash and
// power settings for it. It is the ACS family's device.Device, a device.Flasher and a
// device.PowerCycler (both answer device.ErrUnsupported when the bench gives the target no flash
// or power section).
type Session struct {
	*Device
	port       *link.Port
	transcript *console.Transcript
	power      *benchpower.Lazy // nil: no power section
	flash      *FlashConfig     // nil: not flashed over the console
	flashErr   error            // why flash is nil
}

var (
	_ device.Device      = (*Session)(nil)
	_ device.Flasher     = (*Session)(nil)
	_ device.PowerCycler = (*Session)(nil)
)

// Open opens a bench target's serial port and console and returns its driver. The transcript of
// every byte goes to <outDir>/<name>.transcript (no transcript when outDir is empty).
func Open(ctx context.Context, t *bench.Target, outDir string, redact *console.Redactor) (*Session, error) {
	cfg, err := ConfigFromBench(t)
	if err != nil {
		return nil, err
	}
	pw, err := benchpower.For(t)
	if err != nil {
		return nil, err
	}
	s := &Session{power: pw}
	var cycle func(context.Context) error
	if pw != nil {
		cycle = pw.Cycle
	}
	if fc, err := FlashConfigFromBench(t, cycle); err == nil {
		s.flash = &fc
	} else if t.Flash != nil && t.Flash.Method == bench.MethodYModem {
		return nil, err // a flash section that does not map is the bench's error, now
	} else {
		s.flashErr = err
	}
	port, err := link.Open(ctx, LinkConfig(t))
	if err != nil {
		return nil, device.Fail(t.Name, device.StepOpen, fmt.Errorf("opening console: %w", err))
	}
	s.port = port
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			port.Close()
			return nil, err
		}
		s.transcript, err = console.CreateTranscript(filepath.Join(outDir, t.Name+".transcript"), redact)
		if err != nil {
			port.Close()
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	// ACS consoles run busybox ash, whose line editor waits for an answer to its cursor query.
	// SyncLine: a POSIX shell's comment frames Sync's prompt without a quiet period.
	con := console.New(port, console.Options{Name: t.Name, Prompt: cfg.Prompt, Transcript: s.transcript, Redactor: redact, CursorReply: true, SyncLine: "#"})
	s.Device = New(con, cfg)
	return s, nil
}

// FlashConfig is the bench's flash settings for this device (mapped once, at Open), for callers
// that vary them (a shorter timeout, one attempt); ErrUnsupported without a ymodem flash section.
func (s *Session) FlashConfig() (FlashConfig, error) {
	if s.flash == nil {
		return FlashConfig{}, s.flashErr
	}
	return *s.flash, nil
}

// Flash writes img through the bootloader with the bench's flash settings (FlashWith).
func (s *Session) Flash(ctx context.Context, img *flash.Image, opts device.FlashOptions) (*device.FlashResult, error) {
	cfg, err := s.FlashConfig()
	if err != nil {
		return nil, err
	}
	res, err := s.FlashWith(ctx, img, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &device.FlashResult{
		Version: res.Version, Digest: res.Digest, Attempts: res.Attempts, Duration: res.Duration,
		Facts: map[string]string{
			"ymodem_bytes_per_s":     fmt.Sprintf("%.0f", res.Transfer.Throughput),
			"ymodem_retransmissions": strconv.Itoa(res.Transfer.Retransmits),
			"installed":              res.Installed,
		},
	}, nil
}

// PowerCycle switches the device off and on with the bench's power control and waits for its
// prompt.
func (s *Session) PowerCycle(ctx context.Context) error {
	if s.power == nil {
		return device.Fail(s.Name(), device.StepPower, fmt.Errorf("%w: the bench gives %s no power section", device.ErrUnsupported, s.Name()))
	}
	if err := s.power.Cycle(ctx); err != nil {
		return device.Fail(s.Name(), device.StepPower, err)
	}
	bctx, cancel := context.WithTimeout(ctx, s.cfg.BootTimeout)
	defer cancel()
	if err := s.con.Sync(bctx); err != nil {
		s.ready.Store(false)
		return device.Fail(s.Name(), device.StepPower, fmt.Errorf("no prompt after the power cycle: %w", err))
	}
	s.ready.Store(true)
	return nil
}

// Close closes the console, the port, the power control and the transcript.
func (s *Session) Close() error {
	s.con.Close()
	err := s.port.Close()
	if perr := s.power.Close(); err == nil {
		err = perr
	}
	if s.transcript != nil {
		if terr := s.transcript.Close(); err == nil {
			err = terr
		}
	}
	return err
}

package acs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/link"
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

// LinkConfig is the serial configuration of a bench target's console.
func LinkConfig(t *bench.Target) link.Config { return link.ConfigFromBench(t.Console) }

// Session is an open device: its port, console, transcript and driver.
type Session struct {
	*Device
	port       *link.Port
	transcript *console.Transcript
}

// Open opens a bench target's serial port and console and returns its driver. The transcript of
// every byte goes to <outDir>/<name>.transcript (no transcript when outDir is empty).
func Open(ctx context.Context, t *bench.Target, outDir string, redact *console.Redactor) (*Session, error) {
	cfg, err := ConfigFromBench(t)
	if err != nil {
		return nil, err
	}
	port, err := link.Open(ctx, LinkConfig(t))
	if err != nil {
		return nil, &StepError{Target: t.Name, Step: StepOpen, Err: fmt.Errorf("opening console: %w", err)}
	}
	s := &Session{port: port}
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
	con := console.New(port, console.Options{Name: t.Name, Prompt: cfg.Prompt, Transcript: s.transcript, Redactor: redact, CursorReply: true})
	s.Device = New(con, cfg)
	return s, nil
}

// Close closes the console, the port and the transcript.
func (s *Session) Close() error {
	s.con.Close()
	err := s.port.Close()
	if s.transcript != nil {
		if terr := s.transcript.Close(); err == nil {
			err = terr
		}
	}
	return err
}

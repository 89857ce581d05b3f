package ack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/link"
)

// ConfigFromBench turns a bench target into a native-mode driver config. The model the module must
// report comes from ack.module, else from the product configuration's [product] module.
func ConfigFromBench(t *bench.Target, redact *console.Redactor) (Config, error) {
	cfg := Config{Name: t.Name, Baud: t.Console.Baud, Redactor: redact}
	if o := t.ACK; o != nil {
		cfg.Module = o.Module
		cfg.BootTimeout = o.BootTimeout
		cfg.ExchangeTimeout = o.ExchangeTimeout
		if cfg.Module == "" && o.ProductConfig != "" {
			p, err := ReadProduct(o.ProductConfig)
			if err != nil {
				return cfg, fmt.Errorf("target %s: %w", t.Name, err)
			}
			cfg.Module = p.Module
		}
	}
	return cfg, nil
}

// ExternalFromBench is the vendor-tool configuration of an external-mode target.
func ExternalFromBench(t *bench.Target) (ExternalConfig, error) {
	if t.ACK == nil || t.ACK.External == nil {
		return ExternalConfig{}, fmt.Errorf("target %s: external mode needs ack.external in the bench file", t.Name)
	}
	x := t.ACK.External
	cfg := ExternalConfig{Command: x.Command, Timeout: x.Timeout}
	for _, l := range []struct {
		src []string
		dst *[]*regexp.Regexp
	}{{x.Success, &cfg.SuccessPatterns}, {x.Failure, &cfg.FailurePatterns}} {
		for _, s := range l.src {
			re, err := regexp.Compile(s)
			if err != nil {
				return cfg, fmt.Errorf("target %s: ack.external pattern %q: %w", t.Name, s, err)
			}
			*l.dst = append(*l.dst, re)
		}
	}
	return cfg, nil
}

// Product is what hilbench reads from a product configuration's [product] section.
type Product struct {
	Name   string // shown in reports
	Module string // the model modules must report; empty: any
}

// ReadProduct reads the [product] section of a product configuration (OpenSSL syntax).
func ReadProduct(path string) (Product, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Product{}, fmt.Errorf("product configuration: %w", err)
	}
	var p Product
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return p, fmt.Errorf("%s:%d: unterminated section header %q", path, n, line)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		if section != "product" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return p, fmt.Errorf("%s:%d: want key = value in [product], got %q", path, n, line)
		}
		switch strings.TrimSpace(k) {
		case "name":
			p.Name = strings.TrimSpace(v)
		case "module":
			p.Module = strings.TrimSpace(v)
		}
	}
	return p, sc.Err()
}

// Session is an open module: its port, transcript and driver.
type Session struct {
	*Module
	t          *bench.Target
	cfg        Config
	port       *link.Port
	transcript *console.Transcript
	redact     *console.Redactor
}

// Open opens a bench target's serial port and returns its native-mode driver. The transcript of
// every byte goes to <outDir>/<name>.transcript (none when outDir is empty).
func Open(ctx context.Context, t *bench.Target, outDir string, redact *console.Redactor) (*Session, error) {
	cfg, err := ConfigFromBench(t, redact)
	if err != nil {
		return nil, err
	}
	s := &Session{t: t, cfg: cfg, redact: redact}
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, err
		}
		if s.transcript, err = console.CreateTranscript(filepath.Join(outDir, t.Name+".transcript"), redact); err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
	}
	if err := s.openPort(ctx); err != nil {
		s.closeTranscript()
		return nil, err
	}
	return s, nil
}

func (s *Session) openPort(ctx context.Context) error {
	port, err := link.Open(ctx, link.ConfigFromBench(s.t.Console))
	if err != nil {
		return &StepError{Target: s.t.Name, Step: StepHello, Err: fmt.Errorf("opening the module's UART: %w", err)}
	}
	s.port = port
	s.Module = New(port, s.cfg, s.transcript)
	return nil
}

func (s *Session) closePort() error {
	if s.port == nil {
		return nil
	}
	s.Module.Close()
	err := s.port.Close()
	s.port = nil
	return err
}

func (s *Session) closeTranscript() error {
	if s.transcript == nil {
		return nil
	}
	return s.transcript.Close()
}

// Close closes the port and the transcript.
func (s *Session) Close() error {
	err := s.closePort()
	if terr := s.closeTranscript(); err == nil {
		err = terr
	}
	return err
}

// ProvisionExternal lets the vendor's tool provision the module: the port is closed while the tool
// runs (it opens the port itself), then reopened, and the identity is read back and verified
// natively. The tool's word alone never counts as success.
func (s *Session) ProvisionExternal(ctx context.Context, opts Options) ([]*x509.Certificate, *ExternalResult, error) {
	xcfg, err := ExternalFromBench(s.t)
	if err != nil {
		return nil, nil, err
	}
	progress := func(step string) {
		if opts.Progress != nil {
			opts.Progress(s.t.Name, step)
		}
	}
	// The DSN is known before the tool runs, for the {dsn} placeholder and the report.
	progress(StepHello)
	info, err := s.Hello(ctx)
	if err != nil {
		return nil, nil, err
	}
	if info.State == StateProvisioned && !opts.Reprovision {
		return nil, nil, &StepError{Target: s.t.Name, Step: StepHello, Err: fmt.Errorf("%w (DSN %s)", ErrAlreadyProvisioned, info.DSN)}
	}
	if err := s.closePort(); err != nil {
		return nil, nil, &StepError{Target: s.t.Name, Step: StepExternal, Err: fmt.Errorf("closing the port for the vendor tool: %w", err)}
	}
	progress(StepExternal)
	params := ExternalParams{Target: s.t.Name, Port: s.t.Console.Port, DSN: info.DSN}
	if u := s.t.Console.USB; u != nil {
		if params.Port, err = link.Find(link.USBID{VID: u.VID, PID: u.PID, Serial: u.Serial}); err != nil {
			return nil, nil, &StepError{Target: s.t.Name, Step: StepExternal, Err: err}
		}
	}
	if s.t.ACK != nil {
		params.ProductConfig = s.t.ACK.ProductConfig
		if s.t.ACK.External != nil {
			params.PINFile = s.t.ACK.External.PINFile
		}
	}
	res, xerr := RunExternal(ctx, xcfg, params, s.transcript, s.redact)
	if err := s.openPort(ctx); err != nil {
		if xerr != nil {
			return nil, res, &StepError{Target: s.t.Name, Step: StepExternal, Err: xerr}
		}
		return nil, res, err
	}
	if xerr != nil {
		return nil, res, &StepError{Target: s.t.Name, Step: StepExternal, Err: xerr}
	}
	progress(StepVerify)
	chain, err := s.Verify(ctx, opts)
	return chain, res, err
}

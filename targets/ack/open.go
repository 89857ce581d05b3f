package ack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/link"
	"hilbench/harness/pki"
	"hilbench/targets/internal/benchpower"
)

// ConfigFromBench turns a bench target into a native-mode driver config. The model the module must
// report comes from ack.module, else from the product configuration's [product] module.
func ConfigFromBench(t *bench.Target, redact *console.Redactor) (Config, error) {
	cfg := Config{Name: t.Name, Baud: t.Console.Baud, Redactor: redact}
	if o := t.ACK; o != nil {
		cfg.Module = o.Module
		cfg.BootTimeout = o.BootTimeout
		cfg.ExchangeTimeout = o.ExchangeTimeout
		cfg.SlowTimeout = o.SlowTimeout
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

// Session is an open module in native mode: its port, transcript, power control and driver. It
// is a device.Device, device.Identifier and device.PowerCycler (device.ErrUnsupported when the
// bench gives the target no power section).
type Session struct {
	*Module
	t          *bench.Target
	cfg        Config
	port       *link.Port
	transcript *console.Transcript
	redact     *console.Redactor
	power      *benchpower.Lazy
}

var (
	_ device.Device      = (*Session)(nil)
	_ device.Identifier  = (*Session)(nil)
	_ device.PowerCycler = (*Session)(nil)
)

// Open opens a bench target's serial port and returns its native-mode driver. The transcript of
// every byte goes to <outDir>/<name>.transcript (none when outDir is empty). profile is the
// product profile the CSR's subject comes from (Provision needs it; reading and verifying do not).
func Open(ctx context.Context, t *bench.Target, outDir string, redact *console.Redactor, profile *pki.Profile) (*Session, error) {
	cfg, err := ConfigFromBench(t, redact)
	if err != nil {
		return nil, err
	}
	cfg.Profile = profile
	s := &Session{t: t, redact: redact}
	if s.power, err = benchpower.For(t); err != nil {
		return nil, err
	}
	if s.power != nil {
		cfg.PowerCycle = s.power.Cycle
	}
	s.cfg = cfg
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
		return device.Fail(s.t.Name, device.StepOpen, fmt.Errorf("opening the module's UART: %w", err))
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

// Close closes the port, the power control and the transcript.
func (s *Session) Close() error {
	err := s.closePort()
	if perr := s.power.Close(); err == nil {
		err = perr
	}
	if terr := s.closeTranscript(); err == nil {
		err = terr
	}
	return err
}

// ExternalSession is an open module in external mode: Provision runs the vendor's tool, and
// everything else (reading, verifying, restarting) is native, as Session does it.
type ExternalSession struct {
	*Session
	xcfg ExternalConfig
}

var (
	_ device.Device      = (*ExternalSession)(nil)
	_ device.Identifier  = (*ExternalSession)(nil)
	_ device.PowerCycler = (*ExternalSession)(nil)
)

// OpenExternal opens an external-mode target (ack.external in the bench file).
func OpenExternal(ctx context.Context, t *bench.Target, outDir string, redact *console.Redactor) (*ExternalSession, error) {
	xcfg, err := ExternalFromBench(t)
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, t, outDir, redact, nil)
	if err != nil {
		return nil, err
	}
	return &ExternalSession{Session: s, xcfg: xcfg}, nil
}

// Provision lets the vendor's tool provision the module: the port is closed while the tool runs
// (it opens the port itself), then reopened, and the chain is read back (HELLO's state and
// digest, CN = DSN) and verified to iss.Roots() natively. The tool's word alone never counts.
//
// The tool signs with its own DAK access, not through iss: nothing is issued, reserved or recorded
// in the ledger (no Issue, Stored or Verified). The Result's Issued is built from the chain read
// back (its CSR is nil). A module already holding a chain is refused unless opts.Reprovision.
func (s *ExternalSession) Provision(ctx context.Context, iss device.Issuer, opts device.Options) (*device.Result, error) {
	name := s.t.Name
	if iss == nil {
		return nil, device.Fail(name, device.StepVerify, errors.New("no issuer given: its roots are what the chain must verify to"))
	}
	// The DSN is known before the tool runs, for the {dsn} placeholder and the report.
	opts.Step(name, StepHello)
	info, err := s.Hello(ctx)
	if err != nil {
		return nil, err
	}
	if info.State == StateProvisioned && !opts.Reprovision {
		opts.Step(name, device.StepCheck)
		why := fmt.Sprintf("DSN %s, chain SHA-256 %s", info.DSN, info.CertSHA256)
		if chain, err := s.ReadChain(ctx); err == nil {
			why = fmt.Sprintf("DSN %s, leaf serial %s, SHA-256 %s", info.DSN, chain[0].SerialNumber.Text(16), pki.Fingerprint(chain[0]))
		}
		return nil, device.Fail(name, device.StepCheck, fmt.Errorf("%w (%s); pass --reprovision to replace it", device.ErrAlreadyProvisioned, why))
	}
	if err := s.closePort(); err != nil {
		return nil, device.Fail(name, StepExternal, fmt.Errorf("closing the port for the vendor tool: %w", err))
	}
	opts.Step(name, StepExternal)
	params := ExternalParams{Target: name, Port: s.t.Console.Port, DSN: info.DSN}
	if u := s.t.Console.USB; u != nil {
		if params.Port, err = link.Find(link.USBID{VID: u.VID, PID: u.PID, Serial: u.Serial}); err != nil {
			if oerr := s.openPort(ctx); oerr != nil {
				err = errors.Join(err, oerr)
			}
			return nil, device.Fail(name, StepExternal, err)
		}
	}
	if s.t.ACK != nil {
		params.ProductConfig = s.t.ACK.ProductConfig
		if s.t.ACK.External != nil {
			params.PINFile = s.t.ACK.External.PINFile
		}
	}
	xres, xerr := RunExternal(ctx, s.xcfg, params, s.transcript, s.redact)
	if err := s.openPort(ctx); err != nil {
		if xerr != nil {
			return nil, device.Fail(name, StepExternal, xerr)
		}
		return nil, err
	}
	if xerr != nil {
		return nil, device.Fail(name, StepExternal, xerr)
	}
	opts.Step(name, device.StepReadBack)
	chain, raw, err := s.readChecked(ctx)
	if err != nil {
		return nil, err
	}
	opts.Step(name, device.StepVerify)
	if err := device.VerifyStep(name, chain, nil, iss.Roots(), opts.Time()); err != nil {
		return nil, err
	}
	return &device.Result{
		Issued: &pki.Issued{Certificate: chain[0], Chain: chain, ChainPEM: raw},
		Facts:  map[string]string{"provisioned_by": "vendor tool", "vendor_tool_s": fmt.Sprintf("%.1f", xres.Duration.Seconds())},
	}, nil
}

package ack

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"hilbench/harness/console"
	"hilbench/harness/pki"
)

// Steps of the provisioning cycle, as reports name them.
const (
	StepHello    = "hello"
	StepKeyGen   = "keygen"
	StepCSR      = "csr"
	StepIssue    = "issue"
	StepUpload   = "upload"
	StepCommit   = "commit"
	StepReadBack = "read_back"
	StepVerify   = "verify"
	StepReboot   = "reboot"
	StepReset    = "factory_reset"
	StepRecover  = "recover"
	StepExternal = "external"
)

// Module states a HELLO answer reports.
const (
	StateBlank       = "blank"
	StateKeyed       = "keyed"
	StateProvisioned = "provisioned"
)

// Defaults for Config.
const (
	DefaultBootTimeout = 30 * time.Second
	DefaultHost        = "hilbench"
	maxChainLen        = 8192 // BEGIN refuses more (PROTOCOL.md)
	maxAreaLen         = 64 << 10
)

var (
	// ErrAlreadyProvisioned: the module holds a certificate and the caller did not ask to replace it.
	ErrAlreadyProvisioned = errors.New("module already holds a certificate chain")
	// ErrChainMismatch: the chain read back differs from the chain uploaded.
	ErrChainMismatch = errors.New("chain read back differs from the chain uploaded")
	// ErrWrongModule: HELLO reported another module model than the configured one.
	ErrWrongModule = errors.New("module is not the configured model")
)

// StepError says which module failed at which step.
type StepError struct {
	Target string
	Step   string
	Err    error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Target, e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// IssueFunc turns a module's CSR into a signed chain (a station signing directly, or a signing
// agent's client). The target names the module in the DAK's audit log.
type IssueFunc func(ctx context.Context, target string, csrPEM []byte) (*pki.Issued, error)

// Config says how to talk to one module in native mode.
type Config struct {
	Name            string        // target name: errors, transcript, audit log
	Baud            int           // the port's baud rate, for timeouts; default 115200
	Module          string        // model HELLO must report; empty: any
	Host            string        // host name sent in HELLO; default "hilbench"
	ExchangeTimeout time.Duration // answer timeout per send; 0: from the baud rate
	SlowTimeout     time.Duration // added for KEYGEN, CSR, COMMIT; default DefaultSlowTimeout
	BootTimeout     time.Duration // for a restart to come back; default DefaultBootTimeout
	Redactor        *console.Redactor
}

// Info is what HELLO reports.
type Info struct {
	Dialect    string
	Module     string
	DSN        string
	FW         string
	State      string // StateBlank, StateKeyed or StateProvisioned
	CertSHA256 string // hex, lowercase; empty without a certificate
	MaxChunk   int
}

// Module drives one ACK module over its UART in native mode.
type Module struct {
	cfg Config
	t   *Transport

	op sync.Mutex // one operation at a time: the line carries one request

	mu         sync.Mutex
	info       Info
	issued     *pki.Issued // the one chain issued for this module in this run
	recoveries int
}

// New returns a driver for the module behind rw (its serial port); tr may be nil. Call Close when
// done, then close the port.
func New(rw io.ReadWriter, cfg Config, tr *console.Transcript) *Module {
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = DefaultBootTimeout
	}
	t := NewTransport(rw, TransportConfig{
		Name: cfg.Name, Baud: cfg.Baud, ExchangeTimeout: cfg.ExchangeTimeout,
		SlowTimeout: cfg.SlowTimeout, Redactor: cfg.Redactor, Transcript: tr,
	})
	return &Module{cfg: cfg, t: t}
}

// Name is the target's name.
func (m *Module) Name() string { return m.cfg.Name }

// Close stops the driver's reader; the caller closes the port.
func (m *Module) Close() { m.t.Close() }

// Stats are the line counters, recoveries included.
func (m *Module) Stats() Stats {
	s := m.t.Stats()
	m.mu.Lock()
	s.Recoveries = m.recoveries
	m.mu.Unlock()
	return s
}

// Issued is the chain issued (or reused) for this module in this run, if any.
func (m *Module) Issued() *pki.Issued {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.issued
}

// Info is what the last HELLO reported.
func (m *Module) Info() Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info
}

func (m *Module) fail(step string, err error) error {
	var se *StepError
	if errors.As(err, &se) {
		return err
	}
	return &StepError{Target: m.cfg.Name, Step: step, Err: err}
}

// Hello asks the module who it is and what state it is in.
func (m *Module) Hello(ctx context.Context) (Info, error) {
	m.op.Lock()
	defer m.op.Unlock()
	info, err := m.hello(ctx)
	if err != nil {
		return info, m.fail(StepHello, err)
	}
	return info, nil
}

func (m *Module) hello(ctx context.Context) (Info, error) {
	var txt map[string]string
	var err error
	// HELLO changes nothing, so a module that (re)booted meanwhile (just powered, a reset
	// before the port was opened) is simply asked again.
	for range 3 {
		txt, err = m.t.textAnswer(ctx, "HELLO", EncodeText("dialect", Dialect, "host", m.cfg.Host))
		if !errors.Is(err, ErrModuleRestarted) {
			break
		}
	}
	if err != nil {
		return Info{}, err
	}
	info := Info{Dialect: txt["dialect"], Module: txt["module"], DSN: txt["dsn"], FW: txt["fw"],
		State: txt["state"], CertSHA256: strings.ToLower(txt["cert_sha256"])}
	if info.Dialect != Dialect {
		return info, &DialectError{Got: info.Dialect}
	}
	if info.MaxChunk, err = intField(txt, "HELLO", "max_chunk"); err != nil {
		return info, err
	}
	if info.MaxChunk < 1 || info.MaxChunk > 512 {
		return info, fmt.Errorf("module reports max_chunk=%d, want 1 to 512", info.MaxChunk)
	}
	if info.DSN == "" {
		return info, errors.New("module's HELLO answer has no dsn")
	}
	switch info.State {
	case StateBlank, StateKeyed, StateProvisioned:
	default:
		return info, fmt.Errorf("module reports unknown state %q", info.State)
	}
	if info.State == StateProvisioned && len(info.CertSHA256) != 64 {
		return info, fmt.Errorf("module is provisioned but reports cert_sha256=%q", info.CertSHA256)
	}
	if m.cfg.Module != "" && info.Module != m.cfg.Module {
		return info, fmt.Errorf("%w: it reports %q, the bench expects %q", ErrWrongModule, info.Module, m.cfg.Module)
	}
	m.mu.Lock()
	m.info = info
	m.mu.Unlock()
	return info, nil
}

// readArea reads a READ area from offset 0 in chunks of max_chunk. With want >= 0 it reads
// exactly want bytes; with want < 0 it reads to the area's end (a short chunk or code=range).
func (m *Module) readArea(ctx context.Context, area string, want int) ([]byte, error) {
	chunks := newChunkSizer(m.Info().MaxChunk)
	var data []byte
	for want < 0 || len(data) < want {
		off := len(data)
		f, n, err := m.t.exchangeChunk(ctx, chunks, "READ", func(size int) []byte {
			if want >= 0 {
				size = min(size, want-off)
			}
			return EncodeText("area", area, "off", fmt.Sprint(off), "len", fmt.Sprint(size))
		})
		if want >= 0 {
			n = min(n, want-off)
		}
		var me *ModuleError
		if want < 0 && off > 0 && errors.As(err, &me) && me.Code == "range" {
			break // the area is a multiple of the chunk size long
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s at offset %d: %w", area, off, err)
		}
		got, p, err := DecodeChunk(f.Payload)
		if err != nil {
			return nil, fmt.Errorf("reading %s at offset %d: %w", area, off, err)
		}
		if int(got) != off {
			return nil, fmt.Errorf("reading %s at offset %d: module answered offset %d", area, off, got)
		}
		if len(p) > n {
			return nil, fmt.Errorf("reading %s at offset %d: module sent %d bytes, %d asked for", area, off, len(p), n)
		}
		data = append(data, p...)
		if len(data) > maxAreaLen {
			return nil, fmt.Errorf("reading %s: more than %d bytes", area, maxAreaLen)
		}
		if len(p) < n {
			if want >= 0 {
				return nil, fmt.Errorf("%s area ends at %d bytes, the module announced %d", area, len(data), want)
			}
			break
		}
	}
	return data, nil
}

// ReadChain reads the stored certificate chain PEM, exactly as the module holds it.
func (m *Module) ReadChain(ctx context.Context) ([]byte, error) {
	m.op.Lock()
	defer m.op.Unlock()
	if m.Info().MaxChunk == 0 {
		if _, err := m.hello(ctx); err != nil {
			return nil, m.fail(StepHello, err)
		}
	}
	data, err := m.readArea(ctx, "cert", -1)
	if err != nil {
		return nil, m.fail(StepReadBack, err)
	}
	return data, nil
}

// Verify checks what the module holds: provisioned, the chain read back has the SHA-256 HELLO
// reports, verifies to opts.Roots, and its leaf's CN is the module's DSN. It returns the chain.
func (m *Module) Verify(ctx context.Context, opts Options) ([]*x509.Certificate, error) {
	m.op.Lock()
	defer m.op.Unlock()
	info, err := m.hello(ctx)
	if err != nil {
		return nil, m.fail(StepHello, err)
	}
	if info.State != StateProvisioned {
		return nil, m.fail(StepVerify, fmt.Errorf("module %s is %s, not provisioned", info.DSN, info.State))
	}
	raw, err := m.readArea(ctx, "cert", -1)
	if err != nil {
		return nil, m.fail(StepReadBack, err)
	}
	if got := sha256Hex(raw); got != info.CertSHA256 {
		return nil, m.fail(StepReadBack, fmt.Errorf("chain read back (%d bytes) has SHA-256 %s, the module reports %s", len(raw), got, info.CertSHA256))
	}
	chain, err := pki.ParseChainPEM(raw)
	if err != nil {
		return nil, m.fail(StepVerify, fmt.Errorf("parsing the chain read back: %w", err))
	}
	if err := pki.VerifyChain(chain, opts.Roots, opts.now()); err != nil {
		return nil, m.fail(StepVerify, err)
	}
	if cn := chain[0].Subject.CommonName; cn != info.DSN {
		return nil, m.fail(StepVerify, fmt.Errorf("leaf CN is %q, the module's DSN is %q", cn, info.DSN))
	}
	return chain, nil
}

// Reboot restarts the module and waits for it to come back.
func (m *Module) Reboot(ctx context.Context) (Info, error) {
	return m.restart(ctx, StepReboot, "REBOOT")
}

// FactoryReset erases the module's user data (not its key or certificate) and waits for it.
func (m *Module) FactoryReset(ctx context.Context) (Info, error) {
	return m.restart(ctx, StepReset, "FACTORY_RESET")
}

// restart sends verb, then waits for the BOOT event (the proof the module went down) and HELLO.
func (m *Module) restart(ctx context.Context, step, verb string) (Info, error) {
	m.op.Lock()
	defer m.op.Unlock()
	_, err := m.t.Exchange(ctx, verb, nil)
	var re *RestartError
	if errors.As(err, &re) && re.Verb == "" {
		_, err = m.t.Exchange(ctx, verb, nil) // an earlier restart, not the one asked for
	}
	booted := errors.Is(err, ErrModuleRestarted) // the OK got lost, the restart did not
	if err != nil && !booted {
		return Info{}, m.fail(step, err)
	}
	bctx, cancel := context.WithTimeout(ctx, m.cfg.BootTimeout)
	defer cancel()
	if !booted {
		if _, err := m.t.WaitBoot(bctx); err != nil {
			return Info{}, m.fail(step, fmt.Errorf("module did not restart within %v after %s: %w", m.cfg.BootTimeout, verb, err))
		}
	}
	info, err := m.helloUntil(bctx)
	if err != nil {
		return info, m.fail(step, fmt.Errorf("after %s: %w", verb, err))
	}
	return info, nil
}

// helloUntil repeats HELLO while the module stays silent, until ctx ends.
func (m *Module) helloUntil(ctx context.Context) (Info, error) {
	for {
		info, err := m.hello(ctx)
		if err == nil || !(errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrModuleRestarted)) || ctx.Err() != nil {
			return info, err
		}
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

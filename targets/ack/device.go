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
	"hilbench/harness/device"
	"hilbench/harness/pki"
)

// Steps of the provisioning cycle that are the ACK family's own, as reports name them; the shared
// ones (check, issue, read back, verify, reboot, factory reset, record) are harness/device's.
const (
	StepHello    = "hello"
	StepKeyGen   = "keygen"
	StepCSR      = "csr"
	StepUpload   = "upload"
	StepCommit   = "commit"
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

// ErrWrongModule: HELLO reported another module model than the configured one.
var ErrWrongModule = errors.New("module is not the configured model")

// Config says how to talk to one module in native mode.
type Config struct {
	Name            string        // target name: errors, transcript, audit log
	Baud            int           // the port's baud rate, for timeouts; default 115200
	Module          string        // model HELLO must report; empty: any
	Host            string        // host name sent in HELLO; default "hilbench"
	ExchangeTimeout time.Duration // answer timeout per send; 0: from the baud rate
	SlowTimeout     time.Duration // added for KEYGEN, CSR, COMMIT; default DefaultSlowTimeout
	BootTimeout     time.Duration // for a restart to come back; default DefaultBootTimeout
	BusyPause       time.Duration // first pause after code=busy; default BusyPause
	BusyPauseMax    time.Duration // the pause doubles up to this; default BusyPauseMax
	Redactor        *console.Redactor
	// Profile gives the subject the CSR must carry ([dn], CN set to the module's DSN). Provision
	// needs it.
	Profile *pki.Profile
	// PowerCycle, if set, switches the module's power off and on: Provision uses it when the
	// module falls silent, and PowerCycle is it (device.ErrUnsupported without it).
	PowerCycle func(ctx context.Context) error
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
	issued     *pki.Issued // the one chain issued for this module by this Module (CSR set)
	recoveries int
}

var (
	_ device.Device      = (*Module)(nil)
	_ device.Identifier  = (*Module)(nil)
	_ device.PowerCycler = (*Module)(nil)
)

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
		SlowTimeout: cfg.SlowTimeout, BusyPause: cfg.BusyPause, BusyPauseMax: cfg.BusyPauseMax,
		Redactor: cfg.Redactor, Transcript: tr,
	})
	return &Module{cfg: cfg, t: t}
}

// Name is the target's name.
func (m *Module) Name() string { return m.cfg.Name }

// Close stops the driver's reader; the caller closes the port.
func (m *Module) Close() error {
	m.t.Close()
	return nil
}

// LineStats are the line counters, recoveries included.
func (m *Module) LineStats() Stats {
	s := m.t.Stats()
	m.mu.Lock()
	s.Recoveries = m.recoveries
	m.mu.Unlock()
	return s
}

// Stats are LineStats under the names the report gives them.
func (m *Module) Stats() device.Stats {
	s := m.LineStats()
	return device.Stats{
		"frames_sent":      int64(s.FramesSent),
		"retransmissions":  int64(s.Retransmissions),
		"naks":             int64(s.NAKs),
		"damaged_frames":   int64(s.Damaged),
		"timeouts":         int64(s.Timeouts),
		"recoveries":       int64(s.Recoveries),
		"busy_answers":     int64(s.Busy),
		"chunks_shortened": int64(s.Shrinks),
		"tx_bytes":         s.BytesSent,
		"rx_bytes":         s.BytesReceived,
	}
}

// DeviceID is the module's DSN, from HELLO.
func (m *Module) DeviceID(ctx context.Context) (string, error) {
	info, err := m.Hello(ctx)
	if err != nil {
		return "", err
	}
	return info.DSN, nil
}

// PowerCycle switches the module off and on (Config.PowerCycle) and waits until it answers HELLO.
func (m *Module) PowerCycle(ctx context.Context) error {
	if m.cfg.PowerCycle == nil {
		return m.fail(device.StepPower, fmt.Errorf("%w: no power control for %s", device.ErrUnsupported, m.cfg.Name))
	}
	m.op.Lock()
	defer m.op.Unlock()
	if err := m.cfg.PowerCycle(ctx); err != nil {
		return m.fail(device.StepPower, err)
	}
	bctx, cancel := context.WithTimeout(ctx, m.cfg.BootTimeout)
	defer cancel()
	if _, err := m.helloUntil(bctx); err != nil {
		return m.fail(device.StepPower, fmt.Errorf("module did not answer HELLO within %v after the power cycle: %w", m.cfg.BootTimeout, err))
	}
	return nil
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

func (m *Module) fail(step string, err error) error { return device.Fail(m.cfg.Name, step, err) }

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

// ReadChainPEM reads the stored certificate chain PEM, exactly as the module holds it.
func (m *Module) ReadChainPEM(ctx context.Context) ([]byte, error) {
	m.op.Lock()
	defer m.op.Unlock()
	if m.Info().MaxChunk == 0 {
		if _, err := m.hello(ctx); err != nil {
			return nil, m.fail(StepHello, err)
		}
	}
	data, err := m.readArea(ctx, "cert", -1)
	if err != nil {
		return nil, m.fail(device.StepReadBack, err)
	}
	return data, nil
}

// ReadChain reads the chain the module holds and checks it against what the module says of
// itself: HELLO reports it provisioned (else device.ErrNoChain), the bytes read have the SHA-256
// HELLO reports, and the leaf's CN is the module's DSN.
func (m *Module) ReadChain(ctx context.Context) ([]*x509.Certificate, error) {
	chain, _, err := m.readChecked(ctx)
	return chain, err
}

// readChecked is ReadChain, also returning the bytes read.
func (m *Module) readChecked(ctx context.Context) ([]*x509.Certificate, []byte, error) {
	m.op.Lock()
	defer m.op.Unlock()
	info, err := m.hello(ctx)
	if err != nil {
		return nil, nil, m.fail(StepHello, err)
	}
	chain, raw, err := m.readHeld(ctx, info)
	if err != nil {
		return nil, nil, err
	}
	if err := checkCN(chain, info); err != nil {
		return nil, nil, m.fail(device.StepVerify, err)
	}
	return chain, raw, nil
}

// readHeld reads the chain of a module HELLO reported as info: device.ErrNoChain unless it is
// provisioned; the bytes read must have the SHA-256 it reports.
func (m *Module) readHeld(ctx context.Context, info Info) ([]*x509.Certificate, []byte, error) {
	if info.State != StateProvisioned {
		return nil, nil, m.fail(device.StepReadBack, fmt.Errorf("%w (module %s is %s)", device.ErrNoChain, info.DSN, info.State))
	}
	raw, err := m.readArea(ctx, "cert", -1)
	if err != nil {
		return nil, nil, m.fail(device.StepReadBack, err)
	}
	if got := sha256Hex(raw); got != info.CertSHA256 {
		return nil, raw, m.fail(device.StepReadBack, fmt.Errorf("%w: %d bytes read back with SHA-256 %s, the module reports %s",
			device.ErrChainMismatch, len(raw), got, info.CertSHA256))
	}
	chain, err := pki.ParseChainPEM(raw)
	if err != nil {
		return nil, raw, m.fail(device.StepReadBack, fmt.Errorf("parsing the chain read back: %w", err))
	}
	return chain, raw, nil
}

func checkCN(chain []*x509.Certificate, info Info) error {
	if cn := chain[0].Subject.CommonName; cn != info.DSN {
		return fmt.Errorf("leaf CN is %q, the module's DSN is %q", cn, info.DSN)
	}
	return nil
}

// Verify reads the chain back (ReadChain: HELLO's state and digest, CN = DSN) and checks it with
// device.Verify: identical to want's (when given), its leaf holding the key of want's CSR, a
// valid path to the roots at now.
func (m *Module) Verify(ctx context.Context, want *pki.Issued, roots []*x509.Certificate, now time.Time) error {
	chain, err := m.ReadChain(ctx)
	if err != nil {
		return err
	}
	return device.VerifyStep(m.cfg.Name, chain, want, roots, now)
}

// Reboot restarts the module and waits for it to come back (Info has what it reports then).
func (m *Module) Reboot(ctx context.Context) error {
	_, err := m.restart(ctx, device.StepReboot, "REBOOT")
	return err
}

// FactoryReset erases the module's user data (not its key or certificate) and waits for it.
func (m *Module) FactoryReset(ctx context.Context) error {
	_, err := m.restart(ctx, device.StepReset, "FACTORY_RESET")
	return err
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

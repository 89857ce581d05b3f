// Package station assembles what a provisioning station needs from a bench file: the DAK (its
// signer, ledger and audit log, or a signing agent that owns them), the product profile and the
// trust anchors. The CLI and the specs both start here, so a spec run exercises the same set-up a
// factory line does.
//
// # Concepts
//
//   - Station: one bench's signing set-up, checked at start: a DAK whose key does not match its
//     certificate, or that has expired, stops the station before any device is touched.
//   - Direct signing (softdak, yubikey): this process owns the key and runs the issuance
//     pipeline (harness/issue): every certificate is reserved in the ledger with the DAK's budget
//     before it is signed, and recorded in the audit log and the ledger before it is handed out.
//   - Agent signing (agent): `hil signer serve` owns the key, the ledger and the audit log; the
//     station's Issuer is the agent's client.
//   - Roots: the trust anchors chains must verify to; the bench's roots, or the DAK certificate
//     itself when the bench names none.
package station

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/issue"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/agent"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/softdak"
	"hilbench/harness/signer/yubikey"
)

// Station is a bench's signing set-up.
type Station struct {
	Signer  signer.Signer       // nil when an agent signs
	Profile *pki.Profile        // the product profile (an agent checks CSRs with its own)
	Certs   *pki.Issuer         // nil when an agent signs
	Roots   []*x509.Certificate // trust anchors chains must verify to
	// Pipeline is the issuance pipeline when this process signs (nil with an agent); its ledger
	// and audit log are the station's records.
	Pipeline *issue.Pipeline
	// Issuer turns device CSRs into chains, exactly once per device key: the pipeline, or the
	// signing agent's client. Drivers provision through it.
	Issuer device.Issuer
	// Logf receives budget warnings; nil: standard error.
	Logf func(format string, args ...any)

	agent *agent.Client
}

// Open opens the bench's DAK (or its agent), profile, ledger and roots. With a DAK of its own
// the station refuses to start when the ledger counts fewer signatures than the audit log
// holds for the DAK (a deleted or rolled-back ledger).
func Open(ctx context.Context, b *bench.Bench, now time.Time) (*Station, error) {
	roots, err := Roots(b)
	if err != nil {
		return nil, err
	}
	st := &Station{}
	fail := func(err error) (*Station, error) {
		st.Close()
		return nil, err
	}
	if b.Signer.Type == bench.SignerAgent {
		if len(roots) == 0 {
			return nil, errors.New("signer.roots: an agent signer needs the trust anchors chains must verify to")
		}
		c, err := agent.Dial(ctx, b.Signer.Socket)
		if err != nil {
			return nil, err
		}
		st.Roots, st.agent = roots, c
		st.Issuer = c.Issuer(roots)
		if b.Profile.DeviceConf != "" {
			// Drivers that build their CSR's subject (ACK) need the profile here too.
			if st.Profile, err = LoadProfile(b); err != nil {
				return fail(err)
			}
		}
		return st, nil
	}
	s, err := OpenSigner(ctx, b, now)
	if err != nil {
		return nil, err
	}
	st.Signer = s
	if len(roots) == 0 {
		roots = s.Chain()[:1] // the DAK certificate itself
	}
	st.Roots = roots
	if st.Profile, err = LoadProfile(b); err != nil {
		return fail(err)
	}
	if st.Pipeline, err = OpenPipeline(ctx, b, s, st.Profile, roots, st.logf); err != nil {
		return fail(err)
	}
	st.Certs = st.Pipeline.Certs
	st.Issuer = st.Pipeline
	return st, nil
}

// OpenPipeline opens the bench's ledger and audit log and builds the issuance pipeline for the
// DAK s: the one path every certificate takes, at a station or in the signing agent. It checks
// the ledger's count against the audit log and a round-1 budget file before anything is signed.
func OpenPipeline(ctx context.Context, b *bench.Bench, s signer.Signer, profile *pki.Profile,
	roots []*x509.Certificate, logf func(string, ...any)) (*issue.Pipeline, error) {
	chain := s.Chain()
	dir := StateDir(b)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("signer state directory: %w", err)
	}
	owner, err := LockState(dir)
	if err != nil {
		return nil, err
	}
	lg, err := ledger.Open(ctx, b.Ledger, b.Output)
	if err != nil {
		owner.Close()
		return nil, err
	}
	log, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		lg.Close()
		owner.Close()
		return nil, err
	}
	p := &issue.Pipeline{
		Certs: &pki.Issuer{
			Profile:       profile,
			Signer:        s,
			CA:            chain[0],
			Intermediates: chain[1:],
			Validity:      Validity(b),
		},
		Ledger:        lg,
		Audit:         log,
		MaxSignatures: b.Signer.MaxSignatures,
		Station:       StationID(),
		TrustAnchors:  roots,
		Logf:          logf,
		Owner:         owner,
	}
	if err := p.CheckBudgetFloor(ctx); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.CheckLegacyBudget(ctx, filepath.Join(dir, "budget")); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// StationID names this station in ledger records: the host name.
func StationID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "station"
	}
	return h
}

// SetRun names the run whose records the station writes from now on.
func (s *Station) SetRun(id string) {
	if s.Pipeline != nil {
		s.Pipeline.RunID = id
	}
}

// LoadProfile reads the bench's product profile.
func LoadProfile(b *bench.Bench) (*pki.Profile, error) {
	return pki.LoadProfile(b.Profile.DeviceConf, pki.ProfileOptions{
		ExtensionsSection: b.Profile.Extensions,
		DeviceTypeField:   b.Profile.DeviceTypeField,
		PerDeviceFields:   b.Profile.PerDeviceFields,
	})
}

// Validity is the bench's certificate validity.
func Validity(b *bench.Bench) time.Duration {
	days := b.Profile.ValidityDays
	if days == 0 {
		days = bench.DefaultValidityDays
	}
	return time.Duration(days) * 24 * time.Hour
}

// StateDir is where the DAK's budget counter, audit log and agent socket live.
func StateDir(b *bench.Bench) string {
	if b.Signer.StateDir != "" {
		return b.Signer.StateDir
	}
	return filepath.Join(b.Output, "signer")
}

// SocketPath is the agent socket of the bench.
func SocketPath(b *bench.Bench) string {
	if b.Signer.Socket != "" {
		return b.Signer.Socket
	}
	return filepath.Join(StateDir(b), "agent.sock")
}

// Description names the DAK, safe to log.
func (s *Station) Description() string {
	if s.agent != nil {
		if st, err := s.agent.Status(context.Background()); err == nil {
			return "agent (" + st.DAK + ")"
		}
		return "agent"
	}
	return s.Signer.Description()
}

// Close releases the DAK (a YubiKey session is reset and closed), the ledger and audit log, or
// the agent connection.
func (s *Station) Close() error {
	var errs []error
	if s.agent != nil {
		errs = append(errs, s.agent.Close())
	}
	if s.Pipeline != nil {
		errs = append(errs, s.Pipeline.Close())
	}
	if c, ok := s.Signer.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (s *Station) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
		return
	}
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// OpenSigner opens the bench's DAK and checks it can sign at now.
func OpenSigner(ctx context.Context, b *bench.Bench, now time.Time) (signer.Signer, error) {
	switch b.Signer.Type {
	case bench.SignerSoftDAK:
		s, err := softdak.Open(b.Signer.Key, b.Signer.Certificate, b.Signer.Intermediates...)
		if err != nil {
			return nil, err
		}
		if err := signer.CheckChain(s, now); err != nil {
			return nil, err
		}
		return s, nil
	case bench.SignerYubiKey:
		return openYubiKey(ctx, b, now)
	default:
		return nil, fmt.Errorf("signer type %q cannot be opened here (supported: softdak, yubikey)", b.Signer.Type)
	}
}

// openYubiKey opens the bench's YubiKey DAK; the PIN guard inside yubikey.Open decides whether
// the PIN may be tried at all.
func openYubiKey(ctx context.Context, b *bench.Bench, now time.Time) (signer.Signer, error) {
	c := b.Signer
	slot, err := yubikey.ParseSlot(c.Slot)
	if err != nil {
		return nil, fmt.Errorf("signer.slot: %w", err)
	}
	var attRoots []*x509.Certificate
	for _, p := range c.AttestationRoots {
		certs, err := readCerts(p)
		if err != nil {
			return nil, fmt.Errorf("reading attestation root: %w", err)
		}
		attRoots = append(attRoots, certs...)
	}
	return yubikey.Open(ctx, yubikey.Config{
		Serial:            c.Serial,
		Slot:              slot,
		Reader:            c.Reader,
		PINFile:           c.PINFile,
		StateDir:          StateDir(b), // a wrong-PIN stop is remembered with the DAK's state
		AllowLastRetry:    c.AllowLastRetry,
		Attestation:       c.Attestation,
		AttestationRoots:  attRoots,
		IntermediateFiles: c.Intermediates,
		ReplugTimeout:     c.ReplugTimeout,
		Now:               func() time.Time { return now },
	})
}

// Roots reads the bench's trust anchors; without any, a SoftDAK's certificate file is the anchor
// (nil for other signers: Open then takes the DAK certificate).
func Roots(b *bench.Bench) ([]*x509.Certificate, error) {
	paths := b.Signer.Roots
	if len(paths) == 0 && b.Signer.Certificate != "" {
		paths = []string{b.Signer.Certificate}
	}
	var roots []*x509.Certificate
	for _, p := range paths {
		certs, err := readCerts(p)
		if err != nil {
			return nil, fmt.Errorf("reading trust anchor: %w", err)
		}
		roots = append(roots, certs...)
	}
	return roots, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseChainPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// Package station assembles what a provisioning station needs from a bench file: the DAK (its
// signer, budget and audit log, or a signing agent that owns them), the product profile and the
// trust anchors. The CLI and the specs both start here, so a spec run exercises the same set-up a
// factory line does.
//
// # Concepts
//
//   - Station: one bench's signing set-up, checked at start: a DAK whose key does not match its
//     certificate, or that has expired, stops the station before any device is touched.
//   - Direct signing (softdak, yubikey): this process owns the key. Every certificate is counted
//     against the DAK's budget (seed 003) before it is signed and recorded in the audit log after.
//   - Agent signing (agent): `hil signer serve` owns the key, its budget and its audit log; the
//     station sends CSRs over the agent's socket.
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
	"sync"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/agent"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/budget"
	"hilbench/harness/signer/softdak"
	"hilbench/harness/signer/yubikey"
)

// Station is a bench's signing set-up.
type Station struct {
	Signer  signer.Signer // nil when an agent signs
	Profile *pki.Profile  // nil when an agent signs (the agent checks CSRs)
	Certs   *pki.Issuer   // nil when an agent signs
	Roots   []*x509.Certificate
	Budget  *budget.Budget // direct signing only
	Audit   *audit.Log     // direct signing only
	// Logf receives budget warnings; nil: standard error.
	Logf func(format string, args ...any)
	// Issuer turns device CSRs into chains, exactly once per device key; drivers use it.
	Issuer device.Issuer

	agent *agent.Client
	mu    sync.Mutex // direct signing: reserve, sign, record, one at a time
}

// Open opens the bench's DAK (or its agent), profile and roots.
func Open(ctx context.Context, b *bench.Bench, now time.Time) (*Station, error) {
	roots, err := Roots(b)
	if err != nil {
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
		st := &Station{Roots: roots, agent: c}
		st.Issuer = interimIssuer{st}
		return st, nil
	}
	s, err := OpenSigner(ctx, b, now)
	if err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		roots = s.Chain()[:1] // the DAK certificate itself
	}
	st := &Station{Signer: s, Roots: roots}
	st.Issuer = interimIssuer{st}
	fail := func(err error) (*Station, error) {
		st.Close()
		return nil, err
	}
	if st.Profile, err = LoadProfile(b); err != nil {
		return fail(err)
	}
	chain := s.Chain()
	st.Certs = &pki.Issuer{
		Profile:       st.Profile,
		Signer:        s,
		CA:            chain[0],
		Intermediates: chain[1:],
		Validity:      Validity(b),
	}
	if st.Budget, st.Audit, err = OpenLedger(b, chain[0]); err != nil {
		return fail(err)
	}
	return st, nil
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

// OpenLedger opens the DAK's budget counter and audit log in the bench's state directory.
func OpenLedger(b *bench.Bench, dak *x509.Certificate) (*budget.Budget, *audit.Log, error) {
	dir := StateDir(b)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("signer state directory: %w", err)
	}
	bud, err := budget.Open(filepath.Join(dir, "budget"), dak, b.Signer.MaxSignatures)
	if err != nil {
		return nil, nil, err
	}
	log, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		bud.Close()
		return nil, nil, err
	}
	return bud, log, nil
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

// Close releases the DAK (a YubiKey session is reset and closed), the ledger or the agent connection.
func (s *Station) Close() error {
	var errs []error
	if s.agent != nil {
		errs = append(errs, s.agent.Close())
	}
	if s.Audit != nil {
		errs = append(errs, s.Audit.Close())
	}
	if s.Budget != nil {
		errs = append(errs, s.Budget.Close())
	}
	if c, ok := s.Signer.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Issue checks a CSR and issues its chain for the named target. Direct signing checks the CSR
// first (a bad CSR costs no budget), reserves a signature in the budget, signs, and records the
// certificate in the audit log before returning it.
func (s *Station) Issue(ctx context.Context, target string, csrPEM []byte) (*pki.Issued, error) {
	if s.agent != nil {
		return s.agent.Issue(ctx, target, csrPEM)
	}
	if _, err := s.Profile.CheckCSR(csrPEM); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.Budget.Reserve()
	if err != nil {
		return nil, err
	}
	if res.Warning {
		s.logf("DAK budget: %s", res.Message)
	}
	issued, err := s.Certs.Issue(csrPEM)
	if err != nil {
		return nil, err
	}
	rec := audit.FromIssued(issued)
	rec.Target, rec.BudgetUsed, rec.BudgetMax = target, res.Used, res.Max
	if err := s.Audit.Append(rec); err != nil {
		// Nothing leaves the station that its record does not hold.
		return nil, fmt.Errorf("recording certificate %s in the audit log (it was signed and counted, but is held back): %w", rec.Serial, err)
	}
	return issued, nil
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

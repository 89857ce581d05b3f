// Package station assembles what a provisioning station needs from a bench file: the DAK signer,
// the product profile, the issuer and the trust anchors. The CLI and the specs both start here, so
// a spec run exercises the same set-up a factory line does.
//
// # Concepts
//
//   - Station: one bench's signer, profile, issuer and roots, checked at start: a DAK whose key
//     does not match its certificate, or that has expired, stops the station before any device
//     is touched.
//   - Roots: the trust anchors chains must verify to; the bench's roots, or the DAK certificate
//     itself when the bench names none.
package station

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/softdak"
	"hilbench/harness/signer/yubikey"
)

// Station is a bench's signing set-up.
type Station struct {
	Signer  signer.Signer
	Profile *pki.Profile
	Issuer  *pki.Issuer
	Roots   []*x509.Certificate
}

// Open opens the bench's DAK, profile and roots.
func Open(ctx context.Context, b *bench.Bench, now time.Time) (*Station, error) {
	s, err := OpenSigner(ctx, b, now)
	if err != nil {
		return nil, err
	}
	profile, err := pki.LoadProfile(b.Profile.DeviceConf, pki.ProfileOptions{
		ExtensionsSection: b.Profile.Extensions,
		DeviceTypeField:   b.Profile.DeviceTypeField,
		PerDeviceFields:   b.Profile.PerDeviceFields,
	})
	if err != nil {
		return nil, err
	}
	roots, err := Roots(b)
	if err != nil {
		return nil, err
	}
	chain := s.Chain()
	days := b.Profile.ValidityDays
	if days == 0 {
		days = 1825
	}
	return &Station{
		Signer:  s,
		Profile: profile,
		Roots:   roots,
		Issuer: &pki.Issuer{
			Profile:       profile,
			Signer:        s,
			CA:            chain[0],
			Intermediates: chain[1:],
			Validity:      time.Duration(days) * 24 * time.Hour,
		},
	}, nil
}

// Close releases the DAK (a YubiKey session is reset and closed).
func (s *Station) Close() error {
	if c, ok := s.Signer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Issue checks a CSR and issues its chain.
func (s *Station) Issue(_ context.Context, csrPEM []byte) (*pki.Issued, error) {
	return s.Issuer.Issue(csrPEM)
}

// OpenSigner opens the bench's DAK and checks it can sign at now.
func OpenSigner(ctx context.Context, b *bench.Bench, now time.Time) (signer.Signer, error) {
	switch b.Signer.Type {
	case "softdak":
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

// Roots reads the bench's trust anchors; without any, the DAK certificate is the anchor.
func Roots(b *bench.Bench) ([]*x509.Certificate, error) {
	paths := b.Signer.Roots
	if len(paths) == 0 {
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

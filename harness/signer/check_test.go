package signer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"hilbench/harness/signer"
)

// fakeDAK is the smallest Signer: a key and a chain.
type fakeDAK struct {
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate
}

func (f *fakeDAK) Public() crypto.PublicKey { return f.key.Public() }
func (f *fakeDAK) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return f.key.Sign(r, d, o)
}
func (f *fakeDAK) Chain() []*x509.Certificate { return f.chain }
func (f *fakeDAK) Description() string        { return "fake DAK" }

var _ signer.Signer = (*fakeDAK)(nil)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type certSpec struct {
	cn        string
	ca        bool
	keyUsage  x509.KeyUsage
	notBefore time.Time
	notAfter  time.Time
}

func issue(t *testing.T, spec certSpec, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: spec.cn},
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.ca,
		KeyUsage:              spec.keyUsage,
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caSpec(cn string) certSpec {
	return certSpec{cn: cn, ca: true, keyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		notBefore: t0.AddDate(-1, 0, 0), notAfter: t0.AddDate(5, 0, 0)}
}

// pki builds root -> intermediate -> DAK and returns the DAK key and the
// chain [DAK, intermediate] plus the root key pair for variations.
func pki(t *testing.T) (dakKey, interKey *ecdsa.PrivateKey, dak, inter *x509.Certificate) {
	rootKey, interKey, dakKey := newKey(t), newKey(t), newKey(t)
	root := issue(t, caSpec("root"), rootKey.Public(), nil, rootKey)
	inter = issue(t, caSpec("intermediate"), interKey.Public(), root, rootKey)
	dak = issue(t, caSpec("dak"), dakKey.Public(), inter, interKey)
	return dakKey, interKey, dak, inter
}

func TestCheckChain(t *testing.T) {
	dakKey, interKey, dak, inter := pki(t)
	otherKey := newKey(t)

	cases := []struct {
		name    string
		s       *fakeDAK
		now     time.Time
		is      error  // sentinel the error must match; nil for success
		message string // substring of the message
	}{
		{name: "good chain", s: &fakeDAK{dakKey, []*x509.Certificate{dak, inter}}, now: t0},
		{name: "good DAK only", s: &fakeDAK{dakKey, []*x509.Certificate{dak}}, now: t0},
		{name: "empty", s: &fakeDAK{dakKey, nil}, now: t0, is: signer.ErrEmptyChain},
		{name: "other key", s: &fakeDAK{otherKey, []*x509.Certificate{dak, inter}}, now: t0,
			is: signer.ErrKeyMismatch, message: "CN=dak"},
		{name: "expired", s: &fakeDAK{dakKey, []*x509.Certificate{dak, inter}}, now: t0.AddDate(6, 0, 0),
			is: signer.ErrExpired, message: "DAK certificate (CN=dak) expired on 2031-01-01 00:00:00 UTC"},
		{name: "not yet valid", s: &fakeDAK{dakKey, []*x509.Certificate{dak, inter}}, now: t0.AddDate(-2, 0, 0),
			is: signer.ErrNotYetValid, message: "not yet valid: valid from 2025-01-01"},
		{name: "wrong order", s: &fakeDAK{dakKey, []*x509.Certificate{dak, dak}}, now: t0,
			is: signer.ErrBrokenChain, message: "certificate 0 (CN=dak) is not signed by certificate 1 (CN=dak)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := signer.CheckChain(tc.s, tc.now)
			if tc.is == nil {
				if err != nil {
					t.Fatalf("CheckChain: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("CheckChain = %v, want errors.Is %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message %q lacks %q", err, tc.message)
			}
		})
	}

	t.Run("expired intermediate", func(t *testing.T) {
		rootKey := newKey(t)
		root := issue(t, caSpec("root"), rootKey.Public(), nil, rootKey)
		old := caSpec("old intermediate")
		old.notAfter = t0.AddDate(0, 0, -1)
		oldInter := issue(t, old, interKey.Public(), root, rootKey)
		err := signer.CheckChain(&fakeDAK{dakKey, []*x509.Certificate{dak, oldInter}}, t0)
		var ve *signer.ValidityError
		if !errors.As(err, &ve) || ve.Index != 1 || !errors.Is(err, signer.ErrExpired) {
			t.Fatalf("CheckChain = %v, want ValidityError at index 1", err)
		}
		if !strings.Contains(err.Error(), "chain certificate 1 (CN=old intermediate) expired") {
			t.Errorf("message: %v", err)
		}
	})

	t.Run("chain error is typed", func(t *testing.T) {
		err := signer.CheckChain(&fakeDAK{dakKey, []*x509.Certificate{dak, dak}}, t0)
		var ce *signer.ChainError
		if !errors.As(err, &ce) || ce.Index != 0 || ce.Err == nil {
			t.Fatalf("CheckChain = %#v, want *ChainError", err)
		}
	})

	t.Run("not a CA", func(t *testing.T) {
		leafSpec := caSpec("leaf")
		leafSpec.ca = false
		leafSpec.keyUsage = x509.KeyUsageDigitalSignature
		leaf := issue(t, leafSpec, dakKey.Public(), inter, interKey)
		err := signer.CheckChain(&fakeDAK{dakKey, []*x509.Certificate{leaf, inter}}, t0)
		if !errors.Is(err, signer.ErrNotCA) {
			t.Fatalf("CheckChain = %v, want ErrNotCA", err)
		}
	})

	t.Run("CA without keyCertSign", func(t *testing.T) {
		spec := caSpec("no certsign")
		spec.keyUsage = x509.KeyUsageDigitalSignature
		c := issue(t, spec, dakKey.Public(), inter, interKey)
		err := signer.CheckChain(&fakeDAK{dakKey, []*x509.Certificate{c, inter}}, t0)
		if !errors.Is(err, signer.ErrNotCA) || !strings.Contains(err.Error(), "keyCertSign") {
			t.Fatalf("CheckChain = %v, want ErrNotCA about keyCertSign", err)
		}
	})
}

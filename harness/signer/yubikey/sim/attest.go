package sim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Attestation (Yubico, "PIV attestation"): a factory key in slot F9 with a
// certificate (object 5FFF01) from a Yubico CA; ATTEST (0xF9) issues, signed
// by that key, a certificate for the public key of a slot whose key was
// generated on the card, with the firmware version, serial number, PIN/touch
// policy and form factor as extensions. Here the CA is a "Virtual YubiKey
// attestation root" (the real one's key is, rightly, out of reach), so
// verifiers must be given it as their root.

// Yubico attestation extensions (arc 1.3.6.1.4.1.41482.3).
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

// noExpiry is the notAfter of certificates without a well-defined expiration
// (RFC 5280 4.1.2.5).
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// RootCommonName is the subject common name of a generated attestation root.
const RootCommonName = "Virtual YubiKey attestation root"

// CA is an attestation certificate authority: it issues the certificate of
// a card's attestation key (slot F9).
type CA struct {
	Certificate *x509.Certificate
	Key         crypto.Signer
}

// GenerateCA makes a self-signed "Virtual YubiKey attestation root" with an
// ECDSA P-256 key. Give it to several cards (Options.AttestationCA) to verify
// all their attestations with one root. A nil rand means crypto/rand.
func GenerateCA(rnd io.Reader, now time.Time) (*CA, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, fmt.Errorf("generating attestation root key: %w", err)
	}
	sn, err := randomSerial(rnd)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: RootCommonName, Organization: []string{"hilbench"}},
		NotBefore:             now.Add(-time.Hour).UTC(),
		NotAfter:              noExpiry,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating attestation root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing attestation root certificate: %w", err)
	}
	return &CA{Certificate: cert, Key: key}, nil
}

// LoadCA reads a CA from a PEM certificate and a PEM private key (PKCS#8,
// SEC 1 "EC PRIVATE KEY" or PKCS#1).
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("loading attestation CA: no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("loading attestation CA certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("loading attestation CA: no PEM private key")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("loading attestation CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("loading attestation CA key: %T cannot sign", key)
	}
	return &CA{Certificate: cert, Key: signer}, nil
}

// randomSerial returns a positive 127-bit certificate serial number (RFC 5280
// 4.1.2.2: at most 20 octets, positive).
func randomSerial(rnd io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return nil, fmt.Errorf("reading random serial number: %w", err)
	}
	b[0] &= 0x7F
	b[0] |= 0x40 // never zero, always 16 octets
	return new(big.Int).SetBytes(b), nil
}

// certObject is a certificate data object (SP 800-73-4 Part 1, Table 10):
// 70 certificate, 71 CertInfo (uncompressed), FE error detection code.
func certObject(der []byte) []byte {
	out := tlv(0x70, der)
	out = append(out, tlv(0x71, []byte{0x00})...)
	return append(out, tlv(0xFE, nil)...)
}

// yubicoExtensions are the attestation extensions of st's certificates;
// policy (PIN, touch) is nil for the attestation certificate itself.
func yubicoExtensions(st *state, policy []byte) ([]pkix.Extension, error) {
	serial, err := asn1.Marshal(int64(st.Serial))
	if err != nil {
		return nil, fmt.Errorf("encoding serial extension: %w", err)
	}
	exts := []pkix.Extension{
		{Id: oidFirmware, Value: bytes.Clone(firmware[:])},
		{Id: oidSerial, Value: serial},
	}
	if policy != nil {
		exts = append(exts, pkix.Extension{Id: oidPolicy, Value: policy})
	}
	return append(exts, pkix.Extension{Id: oidFormFactor, Value: []byte{st.FormFactor}}), nil
}

// newState makes the state of a new card.
func (c *Card) newState(opts Options) (*state, error) {
	st := &state{Format: stateFormat, Serial: opts.Serial, FormFactor: opts.FormFactor}
	if st.Serial == 0 {
		st.Serial = DefaultSerial
	}
	if st.FormFactor == 0 {
		st.FormFactor = FormFactorUSBAKeychain
	}
	ca := opts.AttestationCA
	if ca == nil {
		var err error
		if ca, err = GenerateCA(c.rand, c.now()); err != nil {
			return nil, err
		}
	}
	if ca.Certificate == nil || ca.Key == nil || !ca.Certificate.IsCA {
		return nil, errors.New("attestation CA needs a CA certificate and its key")
	}

	// The factory attestation key and its certificate, like Yubico's
	// "Yubico PIV Attestation" certificate in slot F9.
	key, err := ecdsa.GenerateKey(elliptic.P256(), c.rand)
	if err != nil {
		return nil, fmt.Errorf("generating attestation key: %w", err)
	}
	sn, err := randomSerial(c.rand)
	if err != nil {
		return nil, err
	}
	exts, err := yubicoExtensions(st, nil)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Yubico PIV Attestation"},
		NotBefore:             c.now().Add(-time.Hour).UTC(),
		NotAfter:              noExpiry,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		ExtraExtensions:       exts,
	}
	der, err := x509.CreateCertificate(c.rand, tmpl, ca.Certificate, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issuing attestation certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding attestation key: %w", err)
	}
	st.FactoryAttestationKey, st.FactoryAttestationCert = pk, der
	st.AttestationRoot = bytes.Clone(ca.Certificate.Raw)
	if err := c.resetState(st); err != nil {
		return nil, err
	}
	return st, nil
}

// resetState puts st in its factory state: default PIN, PUK and management
// key, no keys or objects but the factory attestation key and certificate.
func (c *Card) resetState(st *state) error {
	st.PIN, st.PUK = padPIN([]byte(DefaultPIN)), padPIN([]byte(DefaultPUK))
	st.PINRetries, st.PINRetriesLeft = DefaultRetries, DefaultRetries
	st.PUKRetries, st.PUKRetriesLeft = DefaultRetries, DefaultRetries
	st.MgmtAlg, st.MgmtKey, st.MgmtTouch = algTDES, bytes.Clone(defaultMgmtKey), touchPolicyNever
	st.Keys = map[string]*slotKey{}
	st.Objects = map[string][]byte{}
	priv, err := parseECKey(st.FactoryAttestationKey)
	if err != nil {
		return fmt.Errorf("factory attestation key: %w", err)
	}
	k := &slotKey{Alg: algForCurve(priv), PINPolicy: pinPolicyNever, TouchPolicy: touchPolicyNever, Origin: originImported}
	if err := st.setKey(slotAttest, k, priv); err != nil {
		return err
	}
	st.Objects[objectName(objAttestation)] = certObject(st.FactoryAttestationCert)
	return nil
}

// attest is the Yubico ATTEST command (0xF9, P1 slot): the DER certificate
// for the slot's generated key, issued by the F9 key under the subject of
// the F9 certificate. Empty slots and imported keys get 6A80.
func (c *Card) attest(cmd command) ([]byte, uint16) {
	slot := cmd.p1
	if cmd.p2 != 0x00 || !isKeySlot(slot) || slot == slotAttest {
		return nil, swIncorrectP1P2
	}
	k := c.st.key(slot)
	if k == nil || k.Origin != originGenerated {
		return nil, swWrongData
	}
	ak := c.st.key(slotAttest)
	obj, ok := c.st.Objects[objectName(objAttestation)]
	if ak == nil || !ok {
		return nil, swRefNotFound
	}
	items, err := parseTLVs(obj)
	if err != nil {
		return nil, swRefNotFound
	}
	der, ok := findTLV(items, 0x70)
	if !ok {
		return nil, swRefNotFound
	}
	issuer, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, swRefNotFound
	}
	sn, err := randomSerial(c.rand)
	if err != nil {
		c.logf("virtual YubiKey %d: %v", c.st.Serial, err)
		return nil, swMemoryFailure
	}
	exts, err := yubicoExtensions(c.st, []byte{k.PINPolicy, k.TouchPolicy})
	if err != nil {
		return nil, swMemoryFailure
	}
	tmpl := &x509.Certificate{
		SerialNumber:    sn,
		Subject:         pkix.Name{CommonName: fmt.Sprintf("YubiKey PIV Attestation %02x", slot)},
		NotBefore:       issuer.NotBefore,
		NotAfter:        issuer.NotAfter,
		ExtraExtensions: exts,
	}
	// The card signs with whatever key is in F9 and names whatever
	// certificate is in 5FFF01 as issuer, as a YubiKey does; Go's check that
	// the two match is sidestepped by describing the parent with the key's
	// own public half.
	parent := &x509.Certificate{
		Subject:      issuer.Subject,
		RawSubject:   issuer.RawSubject,
		SubjectKeyId: issuer.SubjectKeyId,
		PublicKey:    ak.priv.Public(),
	}
	out, err := x509.CreateCertificate(c.rand, tmpl, parent, k.priv.Public(), ak.priv)
	if err != nil {
		c.logf("virtual YubiKey %d: issuing attestation for slot %02x: %v", c.st.Serial, slot, err)
		return nil, swMemoryFailure
	}
	return out, swOK
}

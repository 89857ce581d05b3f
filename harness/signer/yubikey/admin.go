package yubikey

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/pki"
	"hilbench/harness/signer"
)

// Admin runs the `hil yubikey ...` administration commands. The zero Admin
// looks at readers matching DefaultReader, verifies attestations with
// Yubico's roots and refuses to use a last PIN or PUK retry. Secrets (PIN,
// PUK, management key) are parameters: the CLI reads them at a prompt and
// they never appear in errors.
//
// Every command opens the card exclusively, starting from a reset card
// (no PIN verified, management key not authenticated), and resets it again
// when done.
type Admin struct {
	// Reader filters readers as Config.Reader does.
	Reader string
	// AttestationRoots verify attestations in Status; nil means Yubico's.
	AttestationRoots []*x509.Certificate
	// AllowLastRetry lets a PIN or PUK be presented when one retry remains.
	AllowLastRetry bool
	// Now is the clock certificates are checked against; time.Now if nil.
	Now func() time.Time
}

// List identifies the card in every reader matching DefaultReader.
func List(ctx context.Context) ([]SeenCard, error) { return (&Admin{}).List(ctx) }

// Status reports on the YubiKey with serial; see Admin.Status.
func Status(ctx context.Context, serial uint32) (*StatusReport, error) {
	return (&Admin{}).Status(ctx, serial)
}

// Unblock sets a new PIN with the PUK; see Admin.Unblock.
func Unblock(ctx context.Context, serial uint32, puk, newPIN string) error {
	return (&Admin{}).Unblock(ctx, serial, puk, newPIN)
}

// ChangePIN changes the PIN; see Admin.ChangePIN.
func ChangePIN(ctx context.Context, serial uint32, oldPIN, newPIN string) error {
	return (&Admin{}).ChangePIN(ctx, serial, oldPIN, newPIN)
}

// ChangePUK changes the PUK; see Admin.ChangePUK.
func ChangePUK(ctx context.Context, serial uint32, oldPUK, newPUK string) error {
	return (&Admin{}).ChangePUK(ctx, serial, oldPUK, newPUK)
}

// SetRetries sets the PIN and PUK retry counts; see Admin.SetRetries.
func SetRetries(ctx context.Context, serial uint32, mgmtKey []byte, pin string, pinTries, pukTries int) error {
	return (&Admin{}).SetRetries(ctx, serial, mgmtKey, pin, pinTries, pukTries)
}

// InitDAK generates a DAK on the YubiKey; see Admin.InitDAK.
func InitDAK(ctx context.Context, serial uint32, opts InitOptions) (*InitResult, error) {
	return (&Admin{}).InitDAK(ctx, serial, opts)
}

// ImportDAKCertificate stores the DAK certificate; see
// Admin.ImportDAKCertificate.
func ImportDAKCertificate(ctx context.Context, serial uint32, slot piv.Slot, mgmtKey, certPEM []byte) (*x509.Certificate, error) {
	return (&Admin{}).ImportDAKCertificate(ctx, serial, slot, mgmtKey, certPEM)
}

func (a *Admin) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// adminSession is one administration command's card session.
type adminSession struct {
	yk     *piv.YubiKey
	reader string
	serial uint32
}

// find locates the card without opening it with piv-go.
func (a *Admin) find(ctx context.Context, serial uint32) (string, error) {
	if serial == 0 {
		return "", fmt.Errorf("%w: no serial: name the YubiKey by its serial number (`hil yubikey list` shows them)", ErrConfig)
	}
	return findReader(ctx, a.Reader, serial, "")
}

// open resets the card in reader and opens it with piv-go.
func openAdmin(reader string, serial uint32) (*adminSession, error) {
	if err := resetCard(reader, serial); err != nil {
		return nil, fmt.Errorf("YubiKey %d: resetting the card in %q: %w", serial, reader, err)
	}
	yk, err := piv.Open(reader)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d: opening the card in %q: %w", serial, reader, err)
	}
	s, err := yk.Serial()
	if err == nil && s != serial {
		err = &NotFoundError{Serial: serial, Seen: []SeenCard{{Reader: reader, Serial: s}}}
	}
	if err != nil {
		_ = yk.Close()
		return nil, fmt.Errorf("YubiKey %d: reading the serial number: %w", serial, err)
	}
	return &adminSession{yk: yk, reader: reader, serial: serial}, nil
}

// close ends the session and resets the card (forgetting a verified PIN
// and an authenticated management key).
func (s *adminSession) close() {
	_ = s.yk.Close()
	_ = resetCard(s.reader, s.serial)
}

func (a *Admin) open(ctx context.Context, serial uint32) (*adminSession, error) {
	reader, err := a.find(ctx, serial)
	if err != nil {
		return nil, err
	}
	return openAdmin(reader, serial)
}

// List identifies the card in every reader matching a.Reader.
func (a *Admin) List(ctx context.Context) ([]SeenCard, error) { return listCards(ctx, a.Reader) }

// checkSecrets validates PINs or PUKs before anything touches the card.
func checkSecrets(names []string, values ...string) error {
	for i, v := range values {
		if p := pinProblem(v); p != "" {
			return fmt.Errorf("%w: %s: %s", ErrConfig, names[i], p)
		}
	}
	return nil
}

// guardPIN reads the PIN counter (piv-go Retries) and refuses at 0, and at
// 1 unless AllowLastRetry, before an operation that presents the PIN.
func (a *Admin) guardPIN(s *adminSession) error {
	n, verified, err := readPINRetries(s.yk)
	if err != nil {
		return fmt.Errorf("YubiKey %d: reading the PIN retry counter (nothing was tried): %w", s.serial, err)
	}
	if verified {
		return nil
	}
	return checkCounter(s.serial, PIN, n, a.AllowLastRetry)
}

// guardPUK reads the PUK counter (GET METADATA) before the PUK is
// presented. Without metadata (firmware before 5.3) it goes ahead only with
// AllowLastRetry.
func (a *Admin) guardPUK(reader string, serial uint32) error {
	_, puk, err := readCounters(reader, serial)
	if err != nil {
		if a.AllowLastRetry {
			return nil
		}
		return fmt.Errorf("YubiKey %d: cannot read the PUK retry counter, so not presenting the PUK (allow the last retry explicitly to go ahead): %w", serial, err)
	}
	return checkCounter(serial, PUK, puk.Remaining, a.AllowLastRetry)
}

// Unblock sets newPIN with the PUK (RESET RETRY COUNTER, SP 800-73-4 Part
// 2, 3.2.3), which also resets the PIN retry counter. The PUK counter is
// read first: a blocked PUK (*LockedError, ErrPUKBlocked) or, without
// AllowLastRetry, one PUK retry left (*LowRetriesError) stop it before the
// PUK is sent. A wrong PUK is a *WrongPINError for PUK.
func (a *Admin) Unblock(ctx context.Context, serial uint32, puk, newPIN string) error {
	if err := checkSecrets([]string{"PUK", "new PIN"}, puk, newPIN); err != nil {
		return err
	}
	return a.withPUK(ctx, serial, "unblocking the PIN", func(s *adminSession) error {
		return s.yk.Unblock(puk, newPIN)
	})
}

// withPUK runs op, which presents the PUK, on the card after the PUK guard allowed it; a PUK
// error comes back as the PUK's *WrongPINError or *LockedError.
func (a *Admin) withPUK(ctx context.Context, serial uint32, what string, op func(*adminSession) error) error {
	reader, err := a.find(ctx, serial)
	if err != nil {
		return err
	}
	if err := a.guardPUK(reader, serial); err != nil {
		return err
	}
	s, err := openAdmin(reader, serial)
	if err != nil {
		return err
	}
	defer s.close()
	if err := op(s); err != nil {
		return fmt.Errorf("YubiKey %d: %s: %w", serial, what, authError(serial, PUK, err))
	}
	return nil
}

// ChangePIN changes the PIN (CHANGE REFERENCE DATA, SP 800-73-4 Part 2,
// 3.2.2). A wrong old PIN counts against the PIN retries, so the PIN
// counter is checked first, as before a VERIFY.
func (a *Admin) ChangePIN(ctx context.Context, serial uint32, oldPIN, newPIN string) error {
	if err := checkSecrets([]string{"old PIN", "new PIN"}, oldPIN, newPIN); err != nil {
		return err
	}
	s, err := a.open(ctx, serial)
	if err != nil {
		return err
	}
	defer s.close()
	if err := a.guardPIN(s); err != nil {
		return err
	}
	if err := s.yk.SetPIN(oldPIN, newPIN); err != nil {
		return fmt.Errorf("YubiKey %d: changing the PIN: %w", serial, authError(serial, PIN, err))
	}
	return nil
}

// ChangePUK changes the PUK; the PUK counter is checked first.
func (a *Admin) ChangePUK(ctx context.Context, serial uint32, oldPUK, newPUK string) error {
	if err := checkSecrets([]string{"old PUK", "new PUK"}, oldPUK, newPUK); err != nil {
		return err
	}
	return a.withPUK(ctx, serial, "changing the PUK", func(s *adminSession) error {
		return s.yk.SetPUK(oldPUK, newPUK)
	})
}

// SetRetries sets how many tries the PIN and the PUK get (Yubico SET PIN
// RETRIES, INS FA; 1 to 255 each). It needs the management key and the
// PIN, and — as on every YubiKey — RESETS THE PIN AND PUK TO THEIR
// DEFAULTS (123456, 12345678): follow it with ChangePIN and ChangePUK.
func (a *Admin) SetRetries(ctx context.Context, serial uint32, mgmtKey []byte, pin string, pinTries, pukTries int) error {
	if err := checkSecrets([]string{"PIN"}, pin); err != nil {
		return err
	}
	if err := checkManagementKey(mgmtKey); err != nil {
		return err
	}
	if pinTries < 1 || pinTries > 255 || pukTries < 1 || pukTries > 255 {
		return fmt.Errorf("%w: retries must be 1 to 255 (PIN %d, PUK %d)", ErrConfig, pinTries, pukTries)
	}
	s, err := a.open(ctx, serial)
	if err != nil {
		return err
	}
	defer s.close()
	if err := a.guardPIN(s); err != nil {
		return err
	}
	if err := s.yk.SetRetries(mgmtKey, pin, pinTries, pukTries); err != nil {
		return fmt.Errorf("YubiKey %d: setting retries: %w", serial, authError(serial, PIN, err))
	}
	return nil
}

// checkManagementKey checks the length of a management key: 24 bytes
// (3DES or AES-192), 16 (AES-128) or 32 (AES-256) (SP 800-78-4 Table 6-1;
// Yubico, "PIV management key").
func checkManagementKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	case 0:
		return fmt.Errorf("%w: no management key (a key still at factory settings uses piv.DefaultManagementKey, which must then be changed)", ErrConfig)
	}
	return fmt.Errorf("%w: management key is %d bytes, want 24 (3DES/AES-192), 16 or 32", ErrConfig, len(k))
}

// InitOptions configures InitDAK. The policies have no defaults: the
// operator chooses them.
type InitOptions struct {
	// Slot for the DAK; the zero Slot means 9c.
	Slot piv.Slot
	// ManagementKey authenticates GENERATE (SP 800-73-4 Part 2, 3.3.2).
	ManagementKey []byte
	// PIN lets the new key sign its CSR (not needed for PIN policy never).
	PIN string
	// PINPolicy and TouchPolicy of the new key; required.
	PINPolicy   piv.PINPolicy
	TouchPolicy piv.TouchPolicy
	// Algorithm: piv.AlgorithmEC256 (the default; DAKs are P-256) or
	// piv.AlgorithmEC384.
	Algorithm piv.Algorithm
	// Subject of the CSR; CommonName is required.
	Subject pkix.Name
	// CSRFile is where the PEM CSR is written; required.
	CSRFile string
	// AttestationFile, if set, receives the slot's attestation certificate
	// followed by the card's attestation certificate (PEM), the proof
	// that the key was generated on this YubiKey.
	AttestationFile string
	// Replace allows generating over an existing key in the slot (that
	// key is destroyed).
	Replace bool
	// Force allows overwriting CSRFile and AttestationFile.
	Force bool
	// Rand is used for the CSR; crypto/rand if nil.
	Rand io.Reader
}

// InitResult is what InitDAK made.
type InitResult struct {
	Serial          uint32
	Slot            piv.Slot
	PublicKey       *ecdsa.PublicKey
	CSR             *x509.CertificateRequest
	CSRPEM          []byte
	CSRFile         string
	Attestation     *x509.Certificate // the slot's attestation, if the card gave one
	AttestationFile string            // "" if not written
	// StaleCertificate is the certificate that was in the slot for the key
	// InitDAK replaced (nil if none). It stays there, and Open refuses it
	// (ErrKeyMismatch), until ImportDAKCertificate stores the new one.
	StaleCertificate *x509.Certificate
}

func (o *InitOptions) check() (piv.Slot, error) {
	slot, err := defaultSlot(o.Slot)
	if err != nil {
		return slot, err
	}
	if o.PINPolicy == 0 || o.TouchPolicy == 0 {
		return slot, fmt.Errorf("%w: choose the PIN policy (never, once, always) and touch policy (never, always, cached) explicitly; there are no defaults", ErrConfig)
	}
	if _, err := ParsePINPolicy(pinPolicyName(o.PINPolicy)); err != nil {
		return slot, err
	}
	if _, err := ParseTouchPolicy(touchPolicyName(o.TouchPolicy)); err != nil {
		return slot, err
	}
	switch o.Algorithm {
	case 0:
		o.Algorithm = piv.AlgorithmEC256
	case piv.AlgorithmEC256, piv.AlgorithmEC384:
	default:
		return slot, fmt.Errorf("%w: algorithm %v: a DAK is ECDSA P-256 (or P-384)", ErrConfig, o.Algorithm)
	}
	if err := checkManagementKey(o.ManagementKey); err != nil {
		return slot, err
	}
	if o.PINPolicy != piv.PINPolicyNever {
		if err := checkSecrets([]string{"PIN"}, o.PIN); err != nil {
			return slot, err
		}
	}
	if o.Subject.CommonName == "" {
		return slot, fmt.Errorf("%w: the DAK subject needs a common name", ErrConfig)
	}
	if o.CSRFile == "" {
		return slot, fmt.Errorf("%w: no CSR file", ErrConfig)
	}
	if !o.Force {
		for _, p := range []string{o.CSRFile, o.AttestationFile} {
			if p == "" {
				continue
			}
			if _, err := os.Lstat(p); err == nil {
				return slot, fmt.Errorf("refusing to overwrite %s (force to replace it): %w", p, fs.ErrExist)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return slot, err
			}
		}
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return slot, nil
}

// InitDAK makes a self-managed DAK (the ACK YubiKey guide): it generates the key ON the
// YubiKey in the slot with the chosen PIN and touch policies (GENERATE
// ASYMMETRIC KEY PAIR, SP 800-73-4 Part 2, 3.3.2; Yubico's policy tags AA
// and AB), has that key sign a CSR for opts.Subject and writes it to
// opts.CSRFile, for the DAK's CA (the AVS console, or a development root)
// to sign. Import the resulting certificate with ImportDAKCertificate.
//
// Everything that can be checked is checked before the card is touched. It
// refuses to replace a key already in the slot unless opts.Replace is set
// (ErrSlotOccupied). The PIN goes through the same guard
// as Open (counter read first, never tried twice).
func (a *Admin) InitDAK(ctx context.Context, serial uint32, opts InitOptions) (*InitResult, error) {
	slot, err := opts.check()
	if err != nil {
		return nil, err
	}
	s, err := a.open(ctx, serial)
	if err != nil {
		return nil, err
	}
	defer s.close()
	yk := s.yk
	info, err := yk.KeyInfo(slot)
	switch {
	case err == nil && !opts.Replace:
		return nil, fmt.Errorf("YubiKey %d slot %s: %w (%s key, %s); generating would destroy it: replace it explicitly",
			serial, slotName(slot), ErrSlotOccupied, algorithmName(info.Algorithm), originName(info.Origin))
	case err != nil && !errors.Is(err, piv.ErrNotFound):
		return nil, fmt.Errorf("YubiKey %d slot %s: reading the slot's metadata: %w", serial, slotName(slot), err)
	}
	stale, err := yk.Certificate(slot)
	if err != nil && !errors.Is(err, piv.ErrNotFound) {
		return nil, fmt.Errorf("YubiKey %d slot %s: reading the slot's certificate: %w", serial, slotName(slot), err)
	}
	guard := &pinGuard{serial: serial, pin: newSecret(opts.PIN), allowLast: a.AllowLastRetry}
	if opts.PINPolicy != piv.PINPolicyNever {
		// Refuse before generating if the PIN could not be used afterwards.
		if err := a.guardPIN(s); err != nil {
			return nil, err
		}
	}
	pub, err := yk.GenerateKey(opts.ManagementKey, slot, piv.Key{Algorithm: opts.Algorithm, PINPolicy: opts.PINPolicy, TouchPolicy: opts.TouchPolicy})
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: generating the DAK: %w", serial, slotName(slot), err)
	}
	ecPub, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("YubiKey %d slot %s: generated key is %T: %w", serial, slotName(slot), pub, ErrUnsupported)
	}
	priv, err := yk.PrivateKey(slot, ecPub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: %w", serial, slotName(slot), err)
	}
	gs := &guardedSigner{yk: yk, guard: guard, priv: priv.(crypto.Signer), policy: opts.PINPolicy}
	der, err := x509.CreateCertificateRequest(opts.Rand, &x509.CertificateRequest{Subject: opts.Subject}, gs)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: the new key signing its CSR: %w", serial, slotName(slot), err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d: parsing the DAK CSR: %w", serial, err)
	}
	if err := csr.CheckSignature(); err != nil || !pki.SamePublicKey(csr.PublicKey, ecPub) {
		return nil, fmt.Errorf("YubiKey %d: the DAK CSR does not verify with the generated key: %v", serial, err)
	}
	r := &InitResult{Serial: serial, Slot: slot, PublicKey: ecPub, CSR: csr, CSRFile: opts.CSRFile, StaleCertificate: stale,
		CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}
	var attPEM []byte
	if att, err := yk.Attest(slot); err == nil {
		r.Attestation = att
		if dev, err := yk.AttestationCertificate(); err == nil {
			attPEM = pki.EncodeChainPEM([]*x509.Certificate{att, dev})
		}
	}
	if err := writeFile(opts.CSRFile, r.CSRPEM, opts.Force); err != nil {
		return nil, fmt.Errorf("YubiKey %d: the DAK was generated but its CSR could not be written (run InitDAK again with replace): %w", serial, err)
	}
	if opts.AttestationFile != "" && attPEM != nil {
		if err := writeFile(opts.AttestationFile, attPEM, opts.Force); err != nil {
			return nil, fmt.Errorf("YubiKey %d: writing the attestation: %w", serial, err)
		}
		r.AttestationFile = opts.AttestationFile
	}
	return r, nil
}

// guardedSigner signs with the card's key, presenting the PIN through the
// guard first (PIN policy once or always).
type guardedSigner struct {
	yk     *piv.YubiKey
	guard  *pinGuard
	priv   crypto.Signer
	policy piv.PINPolicy
}

func (g *guardedSigner) Public() crypto.PublicKey { return g.priv.Public() }

func (g *guardedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if g.policy != piv.PINPolicyNever {
		if err := g.guard.verify(g.yk); err != nil {
			return nil, err
		}
	}
	return g.priv.Sign(r, digest, opts)
}

// writeFile writes data to path through a temporary file and a rename, so a
// reader never sees half a file; without force it refuses to replace path.
func writeFile(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("refusing to overwrite %s: %w", path, fs.ErrExist)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// certOnly is a signer.Signer without a private key, so that
// signer.CheckChain can judge a certificate before it is stored.
type certOnly struct {
	pub   crypto.PublicKey
	chain []*x509.Certificate
}

func (c certOnly) Public() crypto.PublicKey { return c.pub }
func (c certOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("certificate check only")
}
func (c certOnly) Chain() []*x509.Certificate { return c.chain }
func (c certOnly) Description() string        { return "certificate check" }

// ImportDAKCertificate stores the DAK certificate (one PEM CERTIFICATE) in
// the slot's certificate object (PUT DATA, SP 800-73-4 Part 2, 3.3.1;
// object ids Part 1, Table 3), after checking that it certifies the slot's
// public key (ErrKeyMismatch), is valid now (ErrExpired, ErrNotYetValid)
// and can sign certificates (signer.ErrNotCA). The management key is
// needed to write the object. It returns the certificate read back.
func (a *Admin) ImportDAKCertificate(ctx context.Context, serial uint32, slot piv.Slot, mgmtKey, certPEM []byte) (*x509.Certificate, error) {
	slot, err := defaultSlot(slot)
	if err != nil {
		return nil, err
	}
	if err := checkManagementKey(mgmtKey); err != nil {
		return nil, err
	}
	certs, err := pki.ParseChainPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("reading the DAK certificate: %w", err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%w: %d certificates given: only the DAK certificate goes on the YubiKey (intermediates belong in the bench file)", ErrConfig, len(certs))
	}
	cert := certs[0]
	s, err := a.open(ctx, serial)
	if err != nil {
		return nil, err
	}
	defer s.close()
	info, err := slotKeyInfo(s.yk, serial, slot)
	if err != nil {
		return nil, err
	}
	if err := signer.CheckChain(certOnly{pub: info.PublicKey, chain: certs}, a.now()); err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: not importing %q: %w", serial, slotName(slot), cert.Subject.String(), err)
	}
	if err := s.yk.SetCertificate(mgmtKey, slot, cert); err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: storing the certificate: %w", serial, slotName(slot), err)
	}
	back, err := s.yk.Certificate(slot)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: reading the certificate back: %w", serial, slotName(slot), err)
	}
	if !bytes.Equal(back.Raw, cert.Raw) {
		return nil, fmt.Errorf("YubiKey %d slot %s: the certificate read back differs from the one stored", serial, slotName(slot))
	}
	return back, nil
}

func algorithmName(a piv.Algorithm) string {
	switch a {
	case piv.AlgorithmEC256:
		return "ECCP256"
	case piv.AlgorithmEC384:
		return "ECCP384"
	case piv.AlgorithmEd25519:
		return "Ed25519"
	case piv.AlgorithmX25519:
		return "X25519"
	case piv.AlgorithmRSA1024:
		return "RSA1024"
	case piv.AlgorithmRSA2048:
		return "RSA2048"
	case piv.AlgorithmRSA3072:
		return "RSA3072"
	case piv.AlgorithmRSA4096:
		return "RSA4096"
	}
	return fmt.Sprintf("algorithm %d", int(a))
}

func originName(o piv.Origin) string {
	switch o {
	case piv.OriginGenerated:
		return "generated on the YubiKey"
	case piv.OriginImported:
		return "imported"
	}
	return "origin unknown"
}

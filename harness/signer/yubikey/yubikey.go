package yubikey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/pki"
	"hilbench/harness/signer"
)

// Config.Attestation values: AttestationRequired makes Open verify that
// the slot's key was generated on the YubiKey; AttestationOff (or "")
// skips the check.
const (
	AttestationRequired = "required"
	AttestationOff      = "off"
)

// replugPoll is how often Sign looks for a card that went away.
const replugPoll = 250 * time.Millisecond

// Config selects and checks the YubiKey DAK.
type Config struct {
	// Serial is the YubiKey's serial number (printed on the key, and shown
	// by `hil yubikey list`). Required: a station never signs with
	// whichever key happens to be plugged in.
	Serial uint32
	// Slot is the PIV slot of the DAK; the zero Slot means 9c (Digital
	// Signature, SP 800-73-4 Part 1, 3.1.1). See ParseSlot.
	Slot piv.Slot
	// Reader filters PC/SC readers by a case-insensitive substring of their
	// name; "" means DefaultReader ("yubikey"), "*" every reader. Only
	// matching readers are opened, briefly, to read serial numbers.
	Reader string
	// PINFile holds the PIN alone (one trailing line end allowed), mode
	// 0600 or stricter. It is read and checked before any card is touched.
	PINFile string
	// StateDir is where a wrong-PIN stop is remembered (WrongPINMemoFile), by the PIN file's
	// identity, so that the next Open refuses the unchanged file without trying its PIN; the
	// station passes the signer state directory. "" means $XDG_STATE_HOME/hilbench (default
	// ~/.local/state/hilbench).
	StateDir string
	// AllowLastRetry lets the PIN be tried when only one retry remains: an
	// explicit operator override, for one run.
	AllowLastRetry bool
	// Attestation is AttestationRequired, or AttestationOff / "" (not
	// checked).
	Attestation string
	// AttestationRoots verify attestations; nil means Yubico's PIV
	// attestation roots (embedded in piv-go). The virtual YubiKey's root
	// comes from sim.Card.AttestationRoot.
	AttestationRoots []*x509.Certificate
	// Intermediates follow the DAK certificate in Chain, in order; the
	// certificates in IntermediateFiles (PEM) come after them.
	Intermediates     []*x509.Certificate
	IntermediateFiles []string
	// ReplugTimeout is how long Sign waits for the card to come back after
	// it went away mid-signature; 0 looks once and gives up.
	ReplugTimeout time.Duration
	// Now is the clock certificate validity is checked against; time.Now
	// if nil.
	Now func() time.Time
	// Logf, if set, receives events worth a line in the station log (the
	// card went away, came back). Never a PIN.
	Logf func(format string, args ...any)

	// testHookWaiting, if set, is called when Sign starts waiting for the
	// card to come back (tests only).
	testHookWaiting func()
}

// YubiKey is a DAK in a YubiKey PIV slot. It implements signer.Signer.
// Signatures are made one at a time: the card is opened exclusively and a
// YubiKey is safe for concurrent use.
type YubiKey struct {
	cfg     Config
	serial  uint32
	slot    piv.Slot
	pub     *ecdsa.PublicKey
	chain   []*x509.Certificate
	info    piv.KeyInfo
	version piv.Version
	att     *piv.Attestation

	done      chan struct{} // closed by Close, to end a wait for the card
	closeOnce sync.Once

	mu     sync.Mutex // one card operation at a time
	closed bool
	sess   *session // nil while the card is away
	reader string   // where the card was last seen
	guard  *pinGuard
}

var _ signer.Signer = (*YubiKey)(nil)

// session is one exclusive piv-go connection to the card: one PIV card
// session, whose PIN verification the card forgets on reset or removal.
type session struct {
	yk     *piv.YubiKey
	reader string
	priv   crypto.Signer
}

// close ends the session; with reset, the card is reset afterwards so the
// PIN verification does not outlive it.
func (s *session) close(serial uint32, reset bool) error {
	err := s.yk.Close()
	if reset {
		// Best effort: the card may be gone or taken by another program.
		_ = resetCard(s.reader, serial)
	}
	return err
}

// ParseSlot parses a PIV slot name: "9a", "9c", "9d", "9e" or a retired
// key management slot "82".."95" (SP 800-73-4 Part 1, Table 4).
func ParseSlot(s string) (piv.Slot, error) {
	var key uint32
	if _, err := fmt.Sscanf(s, "%x", &key); err != nil || len(s) != 2 {
		return piv.Slot{}, fmt.Errorf("%w: slot %q: want two hex digits such as 9c", ErrConfig, s)
	}
	switch key {
	case 0x9a:
		return piv.SlotAuthentication, nil
	case 0x9c:
		return piv.SlotSignature, nil
	case 0x9d:
		return piv.SlotKeyManagement, nil
	case 0x9e:
		return piv.SlotCardAuthentication, nil
	}
	if slot, ok := piv.RetiredKeyManagementSlot(key); ok {
		return slot, nil
	}
	return piv.Slot{}, fmt.Errorf("%w: slot %q is not a PIV key slot (9a, 9c, 9d, 9e, 82-95)", ErrConfig, s)
}

func slotName(s piv.Slot) string { return fmt.Sprintf("%02x", s.Key) }

// defaultSlot returns slot, or 9c for the zero Slot, checking it is a key
// slot.
func defaultSlot(slot piv.Slot) (piv.Slot, error) {
	if slot == (piv.Slot{}) {
		return piv.SlotSignature, nil
	}
	want, err := ParseSlot(slotName(slot))
	if err != nil {
		return piv.Slot{}, err
	}
	if want != slot {
		return piv.Slot{}, fmt.Errorf("%w: slot %s has object id %06x, want %06x", ErrConfig, slotName(slot), slot.Object, want.Object)
	}
	return slot, nil
}

func (c *Config) check() error {
	if c.Serial == 0 {
		return fmt.Errorf("%w: no serial: name the YubiKey by its serial number (`hil yubikey list` shows them)", ErrConfig)
	}
	switch c.Attestation {
	case "", AttestationOff, AttestationRequired:
	default:
		return fmt.Errorf("%w: attestation %q: want %q or %q", ErrConfig, c.Attestation, AttestationRequired, AttestationOff)
	}
	if c.ReplugTimeout < 0 {
		return fmt.Errorf("%w: negative replug timeout %v", ErrConfig, c.ReplugTimeout)
	}
	return nil
}

// Open finds the YubiKey with cfg.Serial and checks, in this order, that
// it can serve as the DAK: the PIN file is usable (before any card is
// touched); the slot holds an EC key and a certificate for that key, valid
// now, with a chain whose links verify (signer.CheckChain); with
// Attestation "required", the key was generated on this YubiKey; and
// finally the PIN, presented once through the PIN guard (see pinGuard). The
// card is reset first, so the session starts unverified, and kept open
// exclusively until Close.
func Open(ctx context.Context, cfg Config) (*YubiKey, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	slot, err := defaultSlot(cfg.Slot)
	if err != nil {
		return nil, err
	}
	pin, err := readPINFile(cfg.PINFile)
	if err != nil {
		return nil, err
	}
	// A PIN file whose PIN the card refused before, unchanged since, is not tried again.
	memo, err := memoFor(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	pinID, err := statPINFile(cfg.PINFile)
	if err != nil {
		return nil, &PINFileError{Path: cfg.PINFile, Problem: "cannot stat it", Err: err}
	}
	if err := memo.check(pinID); err != nil {
		return nil, err
	}
	var inter []*x509.Certificate
	inter = append(inter, cfg.Intermediates...)
	for _, p := range cfg.IntermediateFiles {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading intermediate certificates: %w", err)
		}
		certs, err := pki.ParseChainPEM(data)
		if err != nil {
			return nil, fmt.Errorf("reading intermediate certificates %s: %w", p, err)
		}
		inter = append(inter, certs...)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	k := &YubiKey{
		cfg:    cfg,
		serial: cfg.Serial,
		slot:   slot,
		done:   make(chan struct{}),
		guard:  &pinGuard{serial: cfg.Serial, pin: pin, allowLast: cfg.AllowLastRetry},
	}
	k.guard.onWrong = func(retries int) {
		if err := memo.record(pinID, cfg.Serial, retries, time.Now()); err != nil {
			cfg.Logf("YubiKey %d: the wrong PIN in %s could not be remembered in %s: %v", cfg.Serial, cfg.PINFile, memo.path, err)
		}
	}
	k.guard.onRight = func() {
		if err := memo.forget(pinID.Path); err != nil {
			cfg.Logf("YubiKey %d: clearing the wrong-PIN record of %s in %s: %v", cfg.Serial, cfg.PINFile, memo.path, err)
		}
	}
	sess, err := k.connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := k.inspect(sess, inter); err != nil {
		_ = sess.close(k.serial, true)
		return nil, err
	}
	if err := k.start(sess, false); err != nil {
		_ = sess.close(k.serial, true)
		return nil, err
	}
	k.sess = sess
	return k, nil
}

// connect finds the card, resets it and opens it with piv-go.
func (k *YubiKey) connect(ctx context.Context) (*session, error) {
	reader, err := findReader(ctx, k.cfg.Reader, k.serial, k.reader)
	if err != nil {
		return nil, err
	}
	if err := resetCard(reader, k.serial); err != nil {
		return nil, fmt.Errorf("YubiKey %d: resetting the card in %q: %w", k.serial, reader, err)
	}
	yk, err := piv.Open(reader)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d: opening the card in %q: %w", k.serial, reader, err)
	}
	s, err := yk.Serial()
	if err == nil && s != k.serial {
		err = &NotFoundError{Serial: k.serial, Seen: []SeenCard{{Reader: reader, Serial: s}}}
	}
	if err != nil {
		_ = yk.Close()
		return nil, fmt.Errorf("YubiKey %d: reading the serial number in %q: %w", k.serial, reader, err)
	}
	k.reader = reader
	return &session{yk: yk, reader: reader}, nil
}

// inspect reads and checks the slot's key and certificate, and the
// attestation when required. Nothing here presents the PIN.
func (k *YubiKey) inspect(sess *session, intermediates []*x509.Certificate) error {
	yk := sess.yk
	k.version = yk.Version()
	info, err := slotKeyInfo(yk, k.serial, k.slot)
	if err != nil {
		return err
	}
	k.info = info
	k.pub = info.PublicKey.(*ecdsa.PublicKey) // slotKeyInfo checked the type
	cert, err := yk.Certificate(k.slot)
	if errors.Is(err, piv.ErrNotFound) {
		return fmt.Errorf("YubiKey %d slot %s: %w: import the DAK certificate with `hil yubikey import-cert`", k.serial, slotName(k.slot), ErrNoCertificate)
	}
	if err != nil {
		return fmt.Errorf("YubiKey %d slot %s: reading the certificate: %w", k.serial, slotName(k.slot), err)
	}
	k.chain = append([]*x509.Certificate{cert}, intermediates...)
	if err := signer.CheckChain(k, k.cfg.Now()); err != nil {
		return fmt.Errorf("YubiKey %d slot %s: %w", k.serial, slotName(k.slot), err)
	}
	if k.cfg.Attestation == AttestationRequired {
		a, err := checkAttestation(yk, k.serial, k.slot, k.pub, k.cfg.AttestationRoots)
		if err != nil {
			return err
		}
		k.att = a
	}
	return nil
}

// slotKeyInfo reads the slot's metadata (Yubico GET METADATA, firmware
// 5.3+; before that, the attestation of a generated key) and checks that
// the key is an EC key this package can use.
func slotKeyInfo(yk *piv.YubiKey, serial uint32, slot piv.Slot) (piv.KeyInfo, error) {
	info, err := yk.KeyInfo(slot)
	if errors.Is(err, piv.ErrNotFound) {
		return info, fmt.Errorf("YubiKey %d slot %s: %w", serial, slotName(slot), ErrSlotEmpty)
	}
	if err != nil {
		v := yk.Version()
		if v.Major > 5 || (v.Major == 5 && v.Minor >= 3) {
			return info, fmt.Errorf("YubiKey %d slot %s: reading the key's metadata: %w", serial, slotName(slot), err)
		}
		// No GET METADATA before 5.3: the attestation of a generated key
		// gives the public key and policies.
		cert, aerr := yk.Attest(slot)
		if errors.Is(aerr, piv.ErrNotFound) {
			return info, fmt.Errorf("YubiKey %d slot %s: %w (or its key was imported, which firmware %d.%d.%d cannot describe)",
				serial, slotName(slot), ErrSlotEmpty, v.Major, v.Minor, v.Patch)
		}
		if aerr != nil {
			return info, fmt.Errorf("YubiKey %d slot %s: %w: firmware %d.%d.%d has no key metadata and the key cannot be attested: %v",
				serial, slotName(slot), ErrUnsupported, v.Major, v.Minor, v.Patch, aerr)
		}
		info.PublicKey = cert.PublicKey
		info.Origin = piv.OriginGenerated
		info.PINPolicy, info.TouchPolicy = attestedPolicies(cert)
	}
	pub, ok := info.PublicKey.(*ecdsa.PublicKey)
	if !ok || (pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384()) {
		return info, fmt.Errorf("YubiKey %d slot %s: %w: the key is %T, want ECDSA P-256 or P-384", serial, slotName(slot), ErrUnsupported, info.PublicKey)
	}
	switch info.PINPolicy {
	case piv.PINPolicyNever, piv.PINPolicyOnce, piv.PINPolicyAlways:
	default:
		return info, fmt.Errorf("YubiKey %d slot %s: %w: PIN policy %s (biometric) is not supported", serial, slotName(slot), ErrUnsupported, pinPolicyName(info.PINPolicy))
	}
	return info, nil
}

// start makes sess usable for signing: the slot still holds the key opened
// (after a replug), the PIN is presented once through the guard (PIN
// policy once; for "always" it is presented before each signature), and
// the piv-go signer is built, without any PIN.
func (k *YubiKey) start(sess *session, replug bool) error {
	if replug {
		// The slot must still hold the key opened.
		info, err := slotKeyInfo(sess.yk, k.serial, k.slot)
		if err != nil {
			return err
		}
		if !info.PublicKey.(*ecdsa.PublicKey).Equal(k.pub) {
			return fmt.Errorf("YubiKey %d slot %s: %w since it was opened", k.serial, slotName(k.slot), ErrKeyChanged)
		}
	}
	if k.info.PINPolicy == piv.PINPolicyOnce {
		if err := k.guard.verify(sess.yk); err != nil {
			return err
		}
	}
	if k.info.PINPolicy == piv.PINPolicyAlways && k.guard.verifies == 0 {
		// Prove the PIN file at Open rather than at the first device.
		if err := k.guard.verify(sess.yk); err != nil {
			return err
		}
	}
	// PINPolicyNever tells piv-go not to VERIFY: the guard does it.
	priv, err := sess.yk.PrivateKey(k.slot, k.pub, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		return fmt.Errorf("YubiKey %d slot %s: %w", k.serial, slotName(k.slot), err)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return fmt.Errorf("YubiKey %d slot %s: %w: piv-go key %T cannot sign", k.serial, slotName(k.slot), ErrUnsupported, priv)
	}
	sess.priv = s
	return nil
}

// Public returns the DAK public key (from the slot's metadata).
func (k *YubiKey) Public() crypto.PublicKey { return k.pub }

// Chain returns a copy of the DAK certificate (read from the slot)
// followed by the configured intermediates.
func (k *YubiKey) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), k.chain...) }

// Certificate returns the DAK certificate read from the slot.
func (k *YubiKey) Certificate() *x509.Certificate { return k.chain[0] }

// Serial returns the YubiKey's serial number.
func (k *YubiKey) Serial() uint32 { return k.serial }

// Slot returns the DAK's PIV slot.
func (k *YubiKey) Slot() piv.Slot { return k.slot }

// KeyInfo returns the slot's algorithm, PIN and touch policies and origin.
func (k *YubiKey) KeyInfo() piv.KeyInfo { return k.info }

// Attestation returns what the attestation showed, or nil when it was not
// required.
func (k *YubiKey) Attestation() *piv.Attestation { return k.att }

// Description names the YubiKey, slot and certificate; never a PIN.
func (k *YubiKey) Description() string {
	c := k.chain[0]
	name := c.Subject.String()
	if c.Subject.CommonName != "" {
		name = "CN=" + c.Subject.CommonName
	}
	return fmt.Sprintf("yubikey serial %d slot %s (%s, expires %s; PIN policy %s, touch %s)", k.serial, slotName(k.slot), name,
		c.NotAfter.UTC().Format("2006-01-02"), pinPolicyName(k.info.PINPolicy), touchPolicyName(k.info.TouchPolicy))
}

// String and GoString keep fmt from printing the struct (and its guard).
func (k *YubiKey) String() string   { return k.Description() }
func (k *YubiKey) GoString() string { return "yubikey.YubiKey{" + k.Description() + "}" }

// Sign signs digest on the card (crypto.Signer): an ASN.1 ECDSA signature,
// checked against the slot's public key before it is returned. opts must
// name the hash the digest was made with; rand is not used (the card makes
// its own nonce). See SignContext.
func (k *YubiKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a context that bounds the wait for a card that
// went away. If the card goes away (or its session loses the PIN
// verification), SignContext waits up to Config.ReplugTimeout for the same
// serial to come back, opens a new session (reset, PIN guard, one VERIFY)
// and signs once more; otherwise it fails with a *ReplugError. A wrong,
// blocked or nearly blocked PIN is never retried.
func (k *YubiKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() == 0 {
		return nil, fmt.Errorf("yubikey: Sign needs the digest's hash in opts (e.g. crypto.SHA256)")
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("yubikey: digest is %d bytes, %v needs %d", len(digest), opts.HashFunc(), opts.HashFunc().Size())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, ErrClosed
	}
	if k.guard.failed != nil {
		return nil, k.guard.failed
	}
	if k.sess == nil {
		if err := k.reconnect(ctx, errors.New("the card was away after an earlier failure")); err != nil {
			return nil, err
		}
	}
	sig, err := k.signOnce(digest, opts)
	if err == nil || !recoverable(err) {
		return sig, err
	}
	if err := k.reconnect(ctx, err); err != nil {
		return nil, err
	}
	return k.signOnce(digest, opts)
}

// signOnce makes one signature in the current session.
func (k *YubiKey) signOnce(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.info.PINPolicy == piv.PINPolicyAlways {
		// The card wants a VERIFY right before each use (Yubico, "PIN
		// policy always").
		if err := k.guard.verify(k.sess.yk); err != nil {
			return nil, err
		}
	}
	sig, err := k.sess.priv.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("YubiKey %d slot %s: signing: %w", k.serial, slotName(k.slot), err)
	}
	if !ecdsa.VerifyASN1(k.pub, digest, sig) {
		return nil, fmt.Errorf("YubiKey %d slot %s: %w", k.serial, slotName(k.slot), ErrBadSignature)
	}
	return sig, nil
}

// swSecurityStatus is "security status not satisfied" (SP 800-73-4 Part 2,
// Table 6): a PIN-once key whose session lost its PIN verification.
const swSecurityStatus = 0x6982

// recoverable reports whether a failed signature may succeed in a new card
// session: the card went away or was reset (a PC/SC error, no status word)
// or forgot the PIN verification. A PIN the guard refused, a status word
// for anything else or a bad signature are final.
func recoverable(err error) bool {
	if errors.Is(err, ErrWrongPIN) || errors.Is(err, ErrLocked) || errors.Is(err, ErrLowRetries) || errors.Is(err, ErrBadSignature) {
		return false
	}
	// piv-go's status word errors have an exported Status method on an
	// unexported type.
	var sw interface{ Status() uint16 }
	if errors.As(err, &sw) {
		return sw.Status() == swSecurityStatus
	}
	var ae piv.AuthErr
	return !errors.As(err, &ae)
}

// reconnect drops the session and waits up to ReplugTimeout for the card
// to come back, then starts a new session. Called with k.mu held.
func (k *YubiKey) reconnect(ctx context.Context, cause error) error {
	if k.sess != nil {
		_ = k.sess.close(k.serial, false)
		k.sess = nil
	}
	timeout := k.cfg.ReplugTimeout
	k.cfg.Logf("yubikey %d: %v; waiting up to %v for it to come back", k.serial, cause, timeout)
	if k.cfg.testHookWaiting != nil {
		k.cfg.testHookWaiting()
	}
	deadline := time.Now().Add(timeout)
	for {
		sess, err := k.connect(ctx)
		if err == nil {
			if err := k.start(sess, true); err != nil {
				_ = sess.close(k.serial, true)
				return fmt.Errorf("YubiKey %d came back after going away (%v), but: %w", k.serial, cause, err)
			}
			k.sess = sess
			k.cfg.Logf("yubikey %d: back in %q; new card session, PIN verified once", k.serial, sess.reader)
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return &ReplugError{Serial: k.serial, Timeout: timeout, Cause: cause, Last: err}
		}
		t := time.NewTimer(min(left, replugPoll))
		select {
		case <-ctx.Done():
			t.Stop()
			return &ReplugError{Serial: k.serial, Timeout: timeout, Cause: cause, Last: ctx.Err()}
		case <-k.done:
			t.Stop()
			return ErrClosed
		case <-t.C:
		}
	}
}

// Close ends the card session and resets the card, so the PIN
// verification does not outlive it. A Sign waiting for the card to come
// back returns ErrClosed.
func (k *YubiKey) Close() error {
	k.closeOnce.Do(func() { close(k.done) })
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	if k.sess == nil {
		return nil
	}
	err := k.sess.close(k.serial, true)
	k.sess = nil
	if err != nil {
		return fmt.Errorf("closing YubiKey %d: %w", k.serial, err)
	}
	return nil
}

func pinPolicyName(p piv.PINPolicy) string {
	switch p {
	case piv.PINPolicyNever:
		return "never"
	case piv.PINPolicyOnce:
		return "once"
	case piv.PINPolicyAlways:
		return "always"
	case piv.PINPolicyMatchOnce:
		return "match-once"
	case piv.PINPolicyMatchAlways:
		return "match-always"
	}
	return "unset"
}

func touchPolicyName(p piv.TouchPolicy) string {
	switch p {
	case piv.TouchPolicyNever:
		return "never"
	case piv.TouchPolicyAlways:
		return "always"
	case piv.TouchPolicyCached:
		return "cached"
	}
	return "unset"
}

// ParsePINPolicy parses "never", "once" or "always" (Yubico, "PIN and
// touch policies"). There is no default.
func ParsePINPolicy(s string) (piv.PINPolicy, error) {
	for _, p := range []piv.PINPolicy{piv.PINPolicyNever, piv.PINPolicyOnce, piv.PINPolicyAlways} {
		if pinPolicyName(p) == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: PIN policy %q: want never, once or always", ErrConfig, s)
}

// ParseTouchPolicy parses "never", "always" or "cached". There is no
// default.
func ParseTouchPolicy(s string) (piv.TouchPolicy, error) {
	for _, p := range []piv.TouchPolicy{piv.TouchPolicyNever, piv.TouchPolicyAlways, piv.TouchPolicyCached} {
		if touchPolicyName(p) == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: touch policy %q: want never, always or cached", ErrConfig, s)
}

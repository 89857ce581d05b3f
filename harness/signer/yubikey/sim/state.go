package sim

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateFormat is the version of the JSON state file layout.
const stateFormat = 1

// state is everything a YubiKey keeps across power cycles: it is what the
// state file holds. Volatile session state (PIN verified, management key
// authenticated, pending responses) lives in volatile, not here.
//
// The file holds secrets (PIN, PUK, management key, private keys) in the
// clear, like the card's own flash; it is written with mode 0600.
type state struct {
	Format     int    `json:"format"`
	Serial     uint32 `json:"serial"`
	FormFactor byte   `json:"form_factor"`

	PIN            []byte `json:"pin"` // 8 bytes, padded with 0xFF (SP 800-73-4 Part 2, 2.4.3)
	PINRetries     int    `json:"pin_retries"`
	PINRetriesLeft int    `json:"pin_retries_left"`
	PUK            []byte `json:"puk"`
	PUKRetries     int    `json:"puk_retries"`
	PUKRetriesLeft int    `json:"puk_retries_left"`

	MgmtAlg   byte   `json:"mgmt_alg"`
	MgmtKey   []byte `json:"mgmt_key"`
	MgmtTouch byte   `json:"mgmt_touch"`

	// Keys by slot, as two hex digits ("9c").
	Keys map[string]*slotKey `json:"keys"`
	// Objects by object identifier, as six hex digits ("5fc10a"): the value
	// of the 0x53 data object (SP 800-73-4 Part 1, 3.1.2).
	Objects map[string][]byte `json:"objects"`

	// Factory attestation key and certificate (restored in slot f9 by RESET,
	// as on a YubiKey) and the root that issued the certificate.
	FactoryAttestationKey  []byte `json:"factory_attestation_key"` // PKCS#8
	FactoryAttestationCert []byte `json:"factory_attestation_cert"`
	AttestationRoot        []byte `json:"attestation_root"`
}

// slotKey is an asymmetric key in a slot with its policies (YubiKey PIN and
// touch policies, Yubico "PIN and touch policies").
type slotKey struct {
	Alg         byte   `json:"alg"`
	PINPolicy   byte   `json:"pin_policy"`
	TouchPolicy byte   `json:"touch_policy"`
	Origin      byte   `json:"origin"`
	Private     []byte `json:"private"` // PKCS#8

	priv *ecdsa.PrivateKey
}

func slotName(slot byte) string         { return fmt.Sprintf("%02x", slot) }
func objectName(id uint32) string       { return fmt.Sprintf("%06x", id) }
func (s *state) key(slot byte) *slotKey { return s.Keys[slotName(slot)] }

// setKey stores priv in slot.
func (s *state) setKey(slot byte, k *slotKey, priv *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encoding key for slot %02x: %w", slot, err)
	}
	k.Private = der
	k.priv = priv
	s.Keys[slotName(slot)] = k
	return nil
}

// decodeState parses and checks a state file, and parses its keys.
func decodeState(b []byte) (*state, error) {
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding state: %w", err)
	}
	if s.Format != stateFormat {
		return nil, fmt.Errorf("state format %d, want %d", s.Format, stateFormat)
	}
	if len(s.PIN) != 8 || len(s.PUK) != 8 {
		return nil, errors.New("state has a PIN or PUK that is not 8 bytes")
	}
	for _, r := range [][2]int{{s.PINRetries, s.PINRetriesLeft}, {s.PUKRetries, s.PUKRetriesLeft}} {
		if r[0] < 1 || r[0] > 255 || r[1] < 0 || r[1] > r[0] {
			return nil, fmt.Errorf("state has retry counters %d of %d", r[1], r[0])
		}
	}
	if _, err := newMgmtCipher(s.MgmtAlg, s.MgmtKey); err != nil {
		return nil, fmt.Errorf("state management key: %w", err)
	}
	if s.Keys == nil {
		s.Keys = map[string]*slotKey{}
	}
	if s.Objects == nil {
		s.Objects = map[string][]byte{}
	}
	for name, k := range s.Keys {
		priv, err := parseECKey(k.Private)
		if err != nil {
			return nil, fmt.Errorf("state key in slot %s: %w", name, err)
		}
		if algForCurve(priv) != k.Alg {
			return nil, fmt.Errorf("state key in slot %s: algorithm %#02x does not match the key", name, k.Alg)
		}
		k.priv = priv
	}
	if _, err := parseECKey(s.FactoryAttestationKey); err != nil {
		return nil, fmt.Errorf("state factory attestation key: %w", err)
	}
	if _, err := x509.ParseCertificate(s.AttestationRoot); err != nil {
		return nil, fmt.Errorf("state attestation root: %w", err)
	}
	return &s, nil
}

func parseECKey(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ECDSA", k)
	}
	return ec, nil
}

// writeFileAtomic replaces path with data so that a reader (or a crash) sees
// either the old or the new content, never a mix: write a temporary file in
// the same directory with mode 0600, sync it, rename it over path, sync the
// directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating temporary state file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("setting mode of %s: %w", tmp, err)
	}
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // best effort: not every file system syncs directories
		_ = d.Close()
	}
	return nil
}

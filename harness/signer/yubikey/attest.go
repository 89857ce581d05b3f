package yubikey

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/pki"
)

// PIV attestation (Yubico, "PIV attestation"): the card's attestation key
// (slot f9, certificate in object 5FFF01, issued by a Yubico CA) signs,
// on ATTEST (INS F9), a certificate for the public key of a slot whose key
// was generated on the card. Imported keys get no attestation. Its
// extensions under 1.3.6.1.4.1.41482.3 carry the firmware version (.3),
// serial number (.7), PIN and touch policies (.8) and form factor (.9).

var oidYubicoPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}

// checkAttestation verifies that the key in slot was generated on the
// YubiKey with serial: the slot's attestation certificate chains through
// the card's attestation certificate to one of roots (nil: Yubico's roots,
// embedded in piv-go), names this serial and slot, and certifies pub.
func checkAttestation(yk *piv.YubiKey, serial uint32, slot piv.Slot, pub crypto.PublicKey, roots []*x509.Certificate) (*piv.Attestation, error) {
	fail := func(reason string, err error) error {
		return &AttestationError{Serial: serial, Slot: slotName(slot), Reason: reason, Err: err}
	}
	slotCert, err := yk.Attest(slot)
	if errors.Is(err, piv.ErrNotFound) {
		return nil, fail("the card gives no attestation for this slot: its key was imported, not generated on the YubiKey", nil)
	}
	if err != nil {
		return nil, fail("the ATTEST command failed", err)
	}
	attCert, err := yk.AttestationCertificate()
	if err != nil {
		return nil, fail("reading the card's attestation certificate (slot f9)", err)
	}
	v := piv.Verifier{}
	rootsName := "Yubico PIV attestation roots"
	if len(roots) > 0 {
		v.Roots = x509.NewCertPool()
		for _, r := range roots {
			v.Roots.AddCert(r)
		}
		rootsName = fmt.Sprintf("%d configured attestation root(s)", len(roots))
	}
	a, err := v.Verify(attCert, slotCert)
	if err != nil {
		return nil, fail(fmt.Sprintf("the attestation (issued by %q) does not chain to the %s", attCert.Issuer.String(), rootsName), err)
	}
	switch {
	case a.Serial != serial:
		return nil, fail(fmt.Sprintf("the attestation is for serial %d", a.Serial), nil)
	case a.Slot != (piv.Slot{}) && a.Slot.Key != slot.Key:
		return nil, fail(fmt.Sprintf("the attestation is for slot %s", slotName(a.Slot)), nil)
	case !pki.SamePublicKey(slotCert.PublicKey, pub):
		return nil, fail("the attested key is not the key in the slot", nil)
	}
	return a, nil
}

// attestedPolicies reads the PIN and touch policies from a slot
// attestation certificate (extension 1.3.6.1.4.1.41482.3.8, two bytes);
// without it, PIN policy "always" (as piv-go assumes) and touch unknown.
func attestedPolicies(cert *x509.Certificate) (piv.PINPolicy, piv.TouchPolicy) {
	pin, touch := piv.PINPolicyAlways, piv.TouchPolicy(0)
	for _, e := range cert.Extensions {
		if !e.Id.Equal(oidYubicoPolicy) || len(e.Value) != 2 {
			continue
		}
		switch e.Value[0] {
		case 0x01:
			pin = piv.PINPolicyNever
		case 0x02:
			pin = piv.PINPolicyOnce
		case 0x03:
			pin = piv.PINPolicyAlways
		default:
			pin = piv.PINPolicy(0) // biometric or unknown: refused later
		}
		switch e.Value[1] {
		case 0x01:
			touch = piv.TouchPolicyNever
		case 0x02:
			touch = piv.TouchPolicyAlways
		case 0x03:
			touch = piv.TouchPolicyCached
		}
	}
	return pin, touch
}

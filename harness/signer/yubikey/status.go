package yubikey

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/pki"
)

// StatusReport is what `hil yubikey status` shows. It holds no secret.
type StatusReport struct {
	Serial     uint32
	Reader     string
	Version    piv.Version
	FormFactor piv.Formfactor
	// PIN and PUK retry counters (remaining of total). CountersErr is set
	// when they could not be read (firmware before 5.3 has no metadata; the
	// PIN's remaining count then comes from an empty VERIFY and
	// PINTotal/PUK are 0).
	PINRetries, PINTotal int
	PUKRetries, PUKTotal int
	CountersErr          error
	Slots                []SlotStatus
	Checked              time.Time // the time certificates were judged at
}

// SlotStatus describes one PIV slot.
type SlotStatus struct {
	Slot           piv.Slot
	Key            *piv.KeyInfo      // nil: no key
	KeyErr         error             // the metadata could not be read
	Certificate    *x509.Certificate // nil: no certificate
	CertificateErr error             // the object holds something unreadable
	KeyMatches     bool              // Certificate certifies Key
	Attestation    *piv.Attestation  // set when the attestation verified
	AttestationErr error             // why it did not (imported key, wrong roots)
}

// Status reports the YubiKey's serial, firmware, PIN and PUK retry
// counters, and for each key slot (9a, 9c, 9d, 9e, and retired slots in
// use) the key's algorithm and policies, the certificate's subject and
// expiry and whether it matches the key, and the attestation result
// against a.AttestationRoots (Yubico's if nil). It presents no PIN and
// changes nothing.
func (a *Admin) Status(ctx context.Context, serial uint32) (*StatusReport, error) {
	reader, err := a.find(ctx, serial)
	if err != nil {
		return nil, err
	}
	r := &StatusReport{Serial: serial, Reader: reader, Checked: a.now()}
	pin, puk, cerr := readCounters(reader, serial)
	r.PINRetries, r.PINTotal, r.PUKRetries, r.PUKTotal, r.CountersErr = pin.Remaining, pin.Total, puk.Remaining, puk.Total, cerr
	s, err := openAdmin(reader, serial)
	if err != nil {
		return nil, err
	}
	defer s.close()
	yk := s.yk
	r.Version = yk.Version()
	if cerr != nil {
		if n, _, err := readPINRetries(yk); err == nil {
			r.PINRetries = n
		}
	}
	if ff, err := yk.FormFactor(); err == nil {
		r.FormFactor = ff
	}
	slots := []piv.Slot{piv.SlotAuthentication, piv.SlotSignature, piv.SlotKeyManagement, piv.SlotCardAuthentication}
	for k := uint32(0x82); k <= 0x95; k++ {
		slot, _ := piv.RetiredKeyManagementSlot(k)
		slots = append(slots, slot)
	}
	for i, slot := range slots {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("YubiKey %d status: %w", serial, err)
		}
		st := SlotStatus{Slot: slot}
		info, err := yk.KeyInfo(slot)
		switch {
		case err == nil:
			st.Key = &info
		case !errors.Is(err, piv.ErrNotFound):
			st.KeyErr = err
		}
		cert, err := yk.Certificate(slot)
		switch {
		case err == nil:
			st.Certificate = cert
		case !errors.Is(err, piv.ErrNotFound):
			st.CertificateErr = err
		}
		if i >= 4 && st.Key == nil && st.KeyErr == nil && st.Certificate == nil && st.CertificateErr == nil {
			continue // retired slots only when used
		}
		if st.Key != nil && st.Certificate != nil {
			st.KeyMatches = pki.SamePublicKey(st.Certificate.PublicKey, st.Key.PublicKey)
		}
		if st.Key != nil {
			st.Attestation, st.AttestationErr = checkAttestation(yk, serial, slot, st.Key.PublicKey, a.AttestationRoots)
		}
		r.Slots = append(r.Slots, st)
	}
	return r, nil
}

// String renders the report for a terminal.
func (r *StatusReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "YubiKey serial %d in %q\n", r.Serial, r.Reader)
	fmt.Fprintf(&b, "  firmware:    %d.%d.%d\n", r.Version.Major, r.Version.Minor, r.Version.Patch)
	if r.FormFactor != 0 {
		fmt.Fprintf(&b, "  form factor: %s\n", r.FormFactor)
	}
	if r.CountersErr != nil {
		fmt.Fprintf(&b, "  PIN retries: %d left (total and PUK unknown: %v)\n", r.PINRetries, r.CountersErr)
	} else {
		fmt.Fprintf(&b, "  PIN retries: %d of %d left%s\n", r.PINRetries, r.PINTotal, counterNote(r.PINRetries, PIN))
		fmt.Fprintf(&b, "  PUK retries: %d of %d left%s\n", r.PUKRetries, r.PUKTotal, counterNote(r.PUKRetries, PUK))
	}
	for _, s := range r.Slots {
		fmt.Fprintf(&b, "  slot %s:\n", slotName(s.Slot))
		switch {
		case s.KeyErr != nil:
			fmt.Fprintf(&b, "    key:         unreadable: %v\n", s.KeyErr)
		case s.Key == nil:
			b.WriteString("    key:         none\n")
		default:
			fmt.Fprintf(&b, "    key:         %s, %s, PIN policy %s, touch policy %s\n", algorithmName(s.Key.Algorithm),
				originName(s.Key.Origin), pinPolicyName(s.Key.PINPolicy), touchPolicyName(s.Key.TouchPolicy))
		}
		switch {
		case s.CertificateErr != nil:
			fmt.Fprintf(&b, "    certificate: unreadable: %v\n", s.CertificateErr)
		case s.Certificate == nil:
			b.WriteString("    certificate: none\n")
		default:
			c := s.Certificate
			state := "valid"
			switch {
			case r.Checked.After(c.NotAfter):
				state = "EXPIRED"
			case r.Checked.Before(c.NotBefore):
				state = "NOT YET VALID"
			}
			match := "matches the key"
			switch {
			case s.Key == nil:
				match = "no key to match"
			case !s.KeyMatches:
				match = "DOES NOT MATCH the key"
			}
			fmt.Fprintf(&b, "    certificate: %s\n", c.Subject)
			fmt.Fprintf(&b, "                 issuer %s\n", c.Issuer)
			fmt.Fprintf(&b, "                 expires %s (%s), %s, SHA-256 %s\n", c.NotAfter.UTC().Format("2006-01-02"), state, match, pki.Fingerprint(c))
		}
		if s.Key != nil {
			if s.AttestationErr != nil {
				fmt.Fprintf(&b, "    attestation: FAILED: %v\n", s.AttestationErr)
			} else {
				fmt.Fprintf(&b, "    attestation: verified: generated on YubiKey %d (firmware %d.%d.%d)\n",
					s.Attestation.Serial, s.Attestation.Version.Major, s.Attestation.Version.Minor, s.Attestation.Version.Patch)
			}
		}
	}
	return b.String()
}

func counterNote(n int, c Credential) string {
	switch {
	case n == 0:
		return fmt.Sprintf(" (BLOCKED%s)", map[Credential]string{PIN: ": unblock with the PUK, `" + UnblockCommand + "`", PUK: ": only a reset, which erases the keys"}[c])
	case n == 1:
		return " (last retry: the harness will not try it without an explicit override)"
	}
	return ""
}

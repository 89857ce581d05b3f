package yubikey

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// DefaultReader is the reader filter used when none is configured: a
// case-insensitive substring of the PC/SC reader name, as yubico-piv-tool's
// default ("Yubikey") is. A YubiKey 5 appears as e.g. "Yubico YubiKey
// OTP+FIDO+CCID 00 00"; the virtual YubiKey as "Virtual PCD 00 00".
const DefaultReader = "yubikey"

// Application identifiers (SP 800-73-4 Part 1, 2.2; Yubico for the OTP
// application that reports the serial number of YubiKeys before 5.0).
var (
	aidPIV     = []byte{0xA0, 0x00, 0x00, 0x03, 0x08}
	aidYubiOTP = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01, 0x01}
)

// SeenCard is a card found while looking for a YubiKey by serial.
type SeenCard struct {
	Reader string
	Serial uint32 // 0 when Err is set
	Err    error  // why the card could not be identified (busy, not a PIV card)
}

func (s SeenCard) String() string {
	if s.Err != nil {
		return fmt.Sprintf("%q: %v", s.Reader, s.Err)
	}
	return fmt.Sprintf("%q: serial %d", s.Reader, s.Serial)
}

// statusError is a card's answer other than 9000 to a raw command.
type statusError struct {
	what string
	sw   uint16
}

func (e *statusError) Error() string { return fmt.Sprintf("%s: card answered %04X", e.what, e.sw) }

// Status makes statusError look like piv-go's status word errors.
func (e *statusError) Status() uint16 { return e.sw }

func (r *rawCard) command(what string, apdu []byte) ([]byte, error) {
	data, sw, err := r.transmit(apdu)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if sw != 0x9000 {
		return nil, &statusError{what: what, sw: sw}
	}
	return data, nil
}

func selectAPDU(aid []byte) []byte {
	return append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(aid))}, aid...)
}

// readSerial selects the PIV application and reads the serial number as
// piv-go does: Yubico's GET SERIAL (0xF8) from firmware 5, the OTP
// application's command 0x10 before.
func (r *rawCard) readSerial() (uint32, error) {
	if _, err := r.command("selecting the PIV application", selectAPDU(aidPIV)); err != nil {
		var se *statusError
		if errors.As(err, &se) {
			return 0, errors.New("not a PIV card (no PIV application)")
		}
		return 0, err
	}
	v, err := r.command("reading the firmware version", []byte{0x00, 0xFD, 0x00, 0x00, 0x00})
	if err != nil {
		return 0, err
	}
	if len(v) != 3 {
		return 0, fmt.Errorf("firmware version is %d bytes, want 3: not a YubiKey", len(v))
	}
	var s []byte
	if v[0] >= 5 {
		s, err = r.command("reading the serial number", []byte{0x00, 0xF8, 0x00, 0x00, 0x00})
	} else {
		if _, err = r.command("selecting the YubiKey OTP application", selectAPDU(aidYubiOTP)); err == nil {
			s, err = r.command("reading the serial number", []byte{0x00, 0x01, 0x10, 0x00, 0x00})
		}
		if _, err2 := r.command("selecting the PIV application", selectAPDU(aidPIV)); err == nil {
			err = err2
		}
	}
	if err != nil {
		return 0, err
	}
	if len(s) != 4 {
		return 0, fmt.Errorf("serial number is %d bytes, want 4", len(s))
	}
	return binary.BigEndian.Uint32(s), nil
}

// retries is one of the PIN or PUK retry counters (Yubico GET METADATA,
// tag 06: total, remaining).
type retries struct {
	Total, Remaining int
}

// readRetriesMetadata reads the PIN (0x80) or PUK (0x81) counter with GET
// METADATA (Yubico, "PIV extensions: GET METADATA", firmware 5.3+). It
// never changes a counter.
func (r *rawCard) readRetriesMetadata(ref byte) (retries, error) {
	resp, err := r.command("reading PIN/PUK metadata", []byte{0x00, 0xF7, 0x00, ref, 0x00})
	if err != nil {
		return retries{}, err
	}
	for len(resp) >= 2 {
		tag, n := resp[0], int(resp[1])
		if 2+n > len(resp) {
			break
		}
		if tag == 0x06 && n == 2 {
			return retries{Total: int(resp[2]), Remaining: int(resp[3])}, nil
		}
		resp = resp[2+n:]
	}
	return retries{}, errors.New("metadata has no retry counter")
}

// matchReader reports whether reader passes the filter (a case-insensitive
// substring; "" means DefaultReader; "*" means every reader).
func matchReader(filter, reader string) bool {
	switch filter {
	case "":
		filter = DefaultReader
	case "*":
		return true
	}
	return strings.Contains(strings.ToLower(reader), strings.ToLower(filter))
}

// findReader looks through the readers passing filter for the card with
// serial, trying prefer first. Each card is opened exclusively for a moment
// and left as it was (SCARD_LEAVE_CARD). Readers without a card are
// skipped; cards that cannot be identified are reported in the
// *NotFoundError.
func findReader(ctx context.Context, filter string, serial uint32, prefer string) (string, error) {
	rc, err := newRawContext()
	if err != nil {
		return "", fmt.Errorf("looking for YubiKey %d: %w", serial, err)
	}
	defer rc.close()
	readers, err := rc.readers()
	if err != nil {
		return "", fmt.Errorf("looking for YubiKey %d: %w", serial, err)
	}
	var names []string
	for _, r := range readers {
		if matchReader(filter, r) {
			if r == prefer {
				names = append([]string{r}, names...)
			} else {
				names = append(names, r)
			}
		}
	}
	nf := &NotFoundError{Serial: serial, Filter: filter, Readers: len(readers)}
	for _, reader := range names {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("looking for YubiKey %d: %w", serial, err)
		}
		got, err := probe(rc, reader)
		var pe *pcscError
		switch {
		case errors.As(err, &pe) && pe.noCard():
			continue
		case err != nil:
			nf.Seen = append(nf.Seen, SeenCard{Reader: reader, Err: err})
		case got == serial:
			return reader, nil
		default:
			nf.Seen = append(nf.Seen, SeenCard{Reader: reader, Serial: got})
		}
	}
	return "", nf
}

// probe reads the serial number of the card in reader.
func probe(rc *rawContext, reader string) (uint32, error) {
	card, err := rc.connect(reader)
	if err != nil {
		return 0, err
	}
	serial, err := card.readSerial()
	if derr := card.disconnect(false); err == nil && derr != nil {
		err = derr
	}
	return serial, err
}

// listCards identifies the card in every reader passing filter.
func listCards(ctx context.Context, filter string) ([]SeenCard, error) {
	rc, err := newRawContext()
	if err != nil {
		return nil, fmt.Errorf("listing YubiKeys: %w", err)
	}
	defer rc.close()
	readers, err := rc.readers()
	if err != nil {
		return nil, fmt.Errorf("listing YubiKeys: %w", err)
	}
	var out []SeenCard
	for _, reader := range readers {
		if !matchReader(filter, reader) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("listing YubiKeys: %w", err)
		}
		s, err := probe(rc, reader)
		var pe *pcscError
		if errors.As(err, &pe) && pe.noCard() {
			continue
		}
		out = append(out, SeenCard{Reader: reader, Serial: s, Err: err})
	}
	return out, nil
}

// resetCard resets the card in reader (SCardDisconnect with
// SCARD_RESET_CARD): its volatile state, including a verified PIN, is gone.
// It first checks the serial, so another card that took the reader's place
// is left alone.
func resetCard(reader string, serial uint32) error {
	rc, err := newRawContext()
	if err != nil {
		return err
	}
	defer rc.close()
	card, err := rc.connect(reader)
	if err != nil {
		return err
	}
	got, err := card.readSerial()
	if err != nil {
		_ = card.disconnect(false)
		return err
	}
	if got != serial {
		_ = card.disconnect(false)
		return &NotFoundError{Serial: serial, Seen: []SeenCard{{Reader: reader, Serial: got}}}
	}
	return card.disconnect(true)
}

// readCounters reads the PIN and PUK retry counters of the card in reader
// (which must have serial) with GET METADATA.
func readCounters(reader string, serial uint32) (pin, puk retries, err error) {
	rc, err := newRawContext()
	if err != nil {
		return pin, puk, err
	}
	defer rc.close()
	card, err := rc.connect(reader)
	if err != nil {
		return pin, puk, err
	}
	defer func() { _ = card.disconnect(false) }()
	got, err := card.readSerial()
	if err != nil {
		return pin, puk, err
	}
	if got != serial {
		return pin, puk, &NotFoundError{Serial: serial, Seen: []SeenCard{{Reader: reader, Serial: got}}}
	}
	if pin, err = card.readRetriesMetadata(0x80); err != nil {
		return pin, puk, fmt.Errorf("PIN counter: %w", err)
	}
	if puk, err = card.readRetriesMetadata(0x81); err != nil {
		return pin, puk, fmt.Errorf("PUK counter: %w", err)
	}
	return pin, puk, nil
}

package yubikey

import (
	"errors"
	"fmt"

	"github.com/go-piv/piv-go/v2/piv"
)

// pinGuard is the only code that sends the PIN to a card. piv-go is never
// given the PIN for signing (every piv.KeyAuth this package builds says
// PINPolicyNever, so piv-go's authTx neither VERIFYs nor calls a prompt):
// the guard VERIFYs once per card session for PIN policy "once", and before
// every signature for PIN policy "always", and each time it
//
//  1. reads the retry counter first (piv-go Retries: an empty VERIFY, SP
//     800-73-4 Part 2, 3.2.1, which never changes the counter);
//  2. refuses at 0 retries (*LockedError) and, unless allowLast, at 1
//     (*LowRetriesError), without sending anything;
//  3. after one wrong PIN remembers it and refuses every later VERIFY of
//     this YubiKey without touching the card (*WrongPINError): the PIN
//     is never tried twice automatically.
type pinGuard struct {
	serial    uint32
	pin       secret
	allowLast bool
	failed    error // set once the card refused the PIN
	verifies  int   // VERIFY commands that carried the PIN
	// onWrong, if set, is told once when the card refuses the PIN (the retries left);
	// onRight, if set, when it first accepts it.
	onWrong func(retries int)
	onRight func()
}

// Format keeps fmt from printing the guard's fields (fmt prints the
// unexported pin field by reflection, without calling its methods).
func (g pinGuard) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "pinGuard{serial: %d, verifies: %d, failed: %v}", g.serial, g.verifies, g.failed)
}

// errVerifiedAnswer is how piv-go v2.6.0 (piv.go ykPINRetries) reports an
// empty VERIFY answered with 9000: the PIN is verified in this session.
const errVerifiedAnswer = "expected error code from empty pin"

// readPINRetries reads the PIN retry counter without changing it. verified
// reports a card session whose PIN is already verified, in which case the
// card does not tell the count.
func readPINRetries(yk *piv.YubiKey) (n int, verified bool, err error) {
	n, err = yk.Retries()
	if err == nil {
		return n, false, nil
	}
	if err.Error() == errVerifiedAnswer {
		return 0, true, nil
	}
	return 0, false, err
}

// verify presents the PIN once, if the counter allows it.
func (g *pinGuard) verify(yk *piv.YubiKey) error {
	if g.failed != nil {
		return g.failed
	}
	n, verified, err := readPINRetries(yk)
	if err != nil {
		return fmt.Errorf("YubiKey %d: reading the PIN retry counter (nothing was tried): %w", g.serial, err)
	}
	// A verified session means the last VERIFY succeeded, which reset the
	// counter to its maximum (a failed one would have cleared the status).
	if !verified {
		switch {
		case n <= 0:
			return &LockedError{Serial: g.serial, Credential: PIN}
		case n == 1 && !g.allowLast:
			return &LowRetriesError{Serial: g.serial, Credential: PIN, Retries: n}
		}
	}
	g.verifies++
	err = yk.VerifyPIN(g.pin.reveal())
	var ae piv.AuthErr
	if errors.As(err, &ae) {
		g.failed = &WrongPINError{Serial: g.serial, Credential: PIN, Retries: ae.Retries}
		if g.onWrong != nil {
			g.onWrong(ae.Retries)
		}
		return g.failed
	}
	if err != nil {
		return fmt.Errorf("YubiKey %d: VERIFY PIN: %w", g.serial, err)
	}
	if g.onRight != nil {
		g.onRight()
		g.onRight = nil
	}
	return nil
}

// checkCounter applies the guard's thresholds to a PIN or PUK counter read
// before an operation that presents it (ChangePIN, Unblock, SetRetries).
func checkCounter(serial uint32, c Credential, n int, allowLast bool) error {
	switch {
	case n <= 0:
		return &LockedError{Serial: serial, Credential: c}
	case n == 1 && !allowLast:
		return &LowRetriesError{Serial: serial, Credential: c, Retries: n}
	}
	return nil
}

// authError turns piv-go's AuthErr into a *WrongPINError for c.
func authError(serial uint32, c Credential, err error) error {
	var ae piv.AuthErr
	if errors.As(err, &ae) {
		return &WrongPINError{Serial: serial, Credential: c, Retries: ae.Retries}
	}
	return err
}

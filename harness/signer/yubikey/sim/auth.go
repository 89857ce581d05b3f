package sim

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"fmt"
	"io"
)

// PIN, PUK and management key handling: SP 800-73-4 Part 2, 3.2.1 (VERIFY),
// 3.2.2 (CHANGE REFERENCE DATA), 3.2.3 (RESET RETRY COUNTER), 3.2.4 (GENERAL
// AUTHENTICATE, with Part 2 Appendix A.1 for the challenge-response with the
// card management key); Yubico extensions SET MANAGEMENT KEY (0xFF), SET PIN
// RETRIES (0xFA) and RESET (0xFB).

// padPIN pads a PIN or PUK to 8 bytes with 0xFF (SP 800-73-4 Part 2, 2.4.3).
func padPIN(p []byte) []byte {
	out := bytes.Repeat([]byte{0xFF}, 8)
	copy(out, p)
	return out
}

// validNewPIN reports whether an 8-byte padded value is an acceptable new PIN
// or PUK for a YubiKey: 6 to 8 bytes, padding only at the end.
func validNewPIN(p []byte) bool {
	n := bytes.IndexByte(p, 0xFF)
	if n < 0 {
		n = len(p)
	}
	if n < 6 {
		return false
	}
	for _, b := range p[n:] {
		if b != 0xFF {
			return false
		}
	}
	return true
}

// retriesSW is 63Cx: wrong reference data, x tries left (at most 15 can be
// shown).
func retriesSW(left int) uint16 {
	if left > 15 {
		left = 15
	}
	return swVerifyFailedBase | uint16(left)
}

// counter gives access to the PIN or the PUK and its retry counter.
type counter struct {
	value *[]byte
	left  *int
	total *int
}

func (c *Card) counterFor(ref byte) (counter, bool) {
	switch ref {
	case refPIN:
		return counter{&c.st.PIN, &c.st.PINRetriesLeft, &c.st.PINRetries}, true
	case refPUK:
		return counter{&c.st.PUK, &c.st.PUKRetriesLeft, &c.st.PUKRetries}, true
	}
	return counter{}, false
}

// check compares candidate with the reference data, counting a failure
// down. It returns swOK or the status word to answer.
func (c *Card) check(ctr counter, candidate []byte) uint16 {
	if *ctr.left <= 0 {
		return swAuthBlocked
	}
	if subtle.ConstantTimeCompare(candidate, *ctr.value) != 1 {
		*ctr.left--
		c.dirty = true
		return retriesSW(*ctr.left)
	}
	if *ctr.left != *ctr.total {
		*ctr.left = *ctr.total
		c.dirty = true
	}
	return swOK
}

// verify is VERIFY (0x20) for the PIN.
func (c *Card) verify(cmd command) ([]byte, uint16) {
	if cmd.p2 != refPIN {
		return nil, swRefNotFound
	}
	switch {
	case cmd.p1 == 0xFF && len(cmd.data) == 0:
		// Reset the security status of the PIN (SP 800-73-4 Part 2, 3.2.1).
		c.vol.pinVerified = false
		return nil, swOK
	case cmd.p1 != 0x00:
		return nil, swIncorrectP1P2
	case len(cmd.data) == 0:
		// Status query: verified in this session, or the retries left.
		switch {
		case c.st.PINRetriesLeft <= 0:
			return nil, swAuthBlocked
		case c.vol.pinVerified:
			return nil, swOK
		}
		return nil, retriesSW(c.st.PINRetriesLeft)
	case len(cmd.data) != 8:
		return nil, swWrongData
	}
	ctr, _ := c.counterFor(refPIN)
	sw := c.check(ctr, cmd.data)
	c.vol.pinVerified = sw == swOK
	c.vol.pinJustVerified = sw == swOK
	return nil, sw
}

// changeReference is CHANGE REFERENCE DATA (0x24) for the PIN or the PUK.
func (c *Card) changeReference(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x00 {
		return nil, swIncorrectP1P2
	}
	ctr, ok := c.counterFor(cmd.p2)
	if !ok {
		return nil, swRefNotFound
	}
	if len(cmd.data) != 16 {
		return nil, swWrongData
	}
	if sw := c.check(ctr, cmd.data[:8]); sw != swOK {
		if cmd.p2 == refPIN {
			c.vol.pinVerified = false
		}
		return nil, sw
	}
	if !validNewPIN(cmd.data[8:]) {
		return nil, swWrongData
	}
	*ctr.value = bytes.Clone(cmd.data[8:])
	c.dirty = true
	return nil, swOK
}

// resetRetryCounter is RESET RETRY COUNTER (0x2C): the PUK unblocks the PIN
// and sets a new one.
func (c *Card) resetRetryCounter(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x00 {
		return nil, swIncorrectP1P2
	}
	if cmd.p2 != refPIN {
		return nil, swRefNotFound
	}
	if len(cmd.data) != 16 {
		return nil, swWrongData
	}
	puk, _ := c.counterFor(refPUK)
	if sw := c.check(puk, cmd.data[:8]); sw != swOK {
		return nil, sw
	}
	if !validNewPIN(cmd.data[8:]) {
		return nil, swWrongData
	}
	c.st.PIN = bytes.Clone(cmd.data[8:])
	c.st.PINRetriesLeft = c.st.PINRetries
	c.vol.pinVerified = false
	c.dirty = true
	return nil, swOK
}

// setRetries is the Yubico SET PIN RETRIES command (0xFA): P1 PIN retries,
// P2 PUK retries. It needs the management key and the PIN, and resets PIN
// and PUK to their defaults.
func (c *Card) setRetries(cmd command) ([]byte, uint16) {
	if !c.vol.mgmtAuth || !c.vol.pinVerified {
		return nil, swSecurityStatus
	}
	if cmd.p1 == 0 || cmd.p2 == 0 {
		return nil, swIncorrectP1P2
	}
	c.st.PIN, c.st.PUK = padPIN([]byte(DefaultPIN)), padPIN([]byte(DefaultPUK))
	c.st.PINRetries, c.st.PINRetriesLeft = int(cmd.p1), int(cmd.p1)
	c.st.PUKRetries, c.st.PUKRetriesLeft = int(cmd.p2), int(cmd.p2)
	c.vol.pinVerified = false
	c.dirty = true
	return nil, swOK
}

// reset is the Yubico RESET command (0xFB): allowed only when both PIN and
// PUK are blocked; restores the factory state (keeping serial number and
// the factory attestation key).
func (c *Card) reset(cmd command) ([]byte, uint16) {
	if c.st.PINRetriesLeft > 0 || c.st.PUKRetriesLeft > 0 {
		return nil, swConditions
	}
	if err := c.resetState(c.st); err != nil {
		c.logf("virtual YubiKey %d: reset: %v", c.st.Serial, err)
		return nil, swMemoryFailure
	}
	c.vol = volatile{applet: appletPIV}
	c.dirty = true
	return nil, swOK
}

// setManagementKey is the Yubico SET MANAGEMENT KEY command (0xFF): data is
// algorithm, 0x9B, length, key. P2 0xFE asks for touch.
func (c *Card) setManagementKey(cmd command) ([]byte, uint16) {
	if !c.vol.mgmtAuth {
		return nil, swSecurityStatus
	}
	if cmd.p1 != 0xFF || (cmd.p2 != 0xFF && cmd.p2 != 0xFE) {
		return nil, swIncorrectP1P2
	}
	d := cmd.data
	if len(d) < 3 || d[1] != refMgmt || int(d[2]) != len(d)-3 {
		return nil, swWrongData
	}
	alg, key := d[0], d[3:]
	if _, err := newMgmtCipher(alg, key); err != nil {
		return nil, swWrongData
	}
	c.st.MgmtAlg, c.st.MgmtKey = alg, bytes.Clone(key)
	c.st.MgmtTouch = touchPolicyNever
	if cmd.p2 == 0xFE {
		c.st.MgmtTouch = touchPolicyAlways
	}
	c.dirty = true
	return nil, swOK
}

// newMgmtCipher returns the block cipher of a management key: 3DES (SP
// 800-78-4) or AES-128/192/256 (YubiKey 5.4+).
func newMgmtCipher(alg byte, key []byte) (cipher.Block, error) {
	switch alg {
	case algTDES:
		if len(key) != 24 {
			return nil, fmt.Errorf("3DES management key of %d bytes", len(key))
		}
		b, err := des.NewTripleDESCipher(key)
		if err != nil {
			return nil, fmt.Errorf("3DES management key: %w", err)
		}
		return b, nil
	case algAES128, algAES192, algAES256:
		want := map[byte]int{algAES128: 16, algAES192: 24, algAES256: 32}[alg]
		if len(key) != want {
			return nil, fmt.Errorf("AES management key of %d bytes, want %d", len(key), want)
		}
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("AES management key: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("management key algorithm %#02x not supported", alg)
}

// mgmtAuthenticate is GENERAL AUTHENTICATE with the card management key
// (slot 9B). Mutual authentication (SP 800-73-4 Part 2, Appendix A.1, as
// piv-go and yubico-piv-tool do it):
//
//	7C 02 80 00            -> 7C L 80 n Enc(W)      witness request
//	7C L 80 n W 81 n C     -> 7C L 82 n Enc(C)      W proves the key
//
// and the single, external authentication:
//
//	7C 02 81 00            -> 7C L 81 n C           challenge request
//	7C L 82 n Enc(C)       -> 9000
func (c *Card) mgmtAuthenticate(cmd command, items []tlvItem) ([]byte, uint16) {
	if cmd.p1 != c.st.MgmtAlg {
		return nil, swIncorrectP1P2
	}
	block, err := newMgmtCipher(c.st.MgmtAlg, c.st.MgmtKey)
	if err != nil {
		return nil, swMemoryFailure
	}
	n := block.BlockSize()
	witness, hasWitness := findTLV(items, 0x80)
	challenge, hasChallenge := findTLV(items, 0x81)
	response, hasResponse := findTLV(items, 0x82)
	encrypt := func(in []byte) []byte {
		out := make([]byte, n)
		block.Encrypt(out, in)
		return out
	}
	random := func() ([]byte, uint16) {
		b := make([]byte, n)
		if _, err := io.ReadFull(c.rand, b); err != nil {
			c.logf("virtual YubiKey %d: reading random: %v", c.st.Serial, err)
			return nil, swMemoryFailure
		}
		return b, swOK
	}
	c.vol.mgmtAuth = false

	switch {
	case hasWitness && len(witness) == 0 && !hasChallenge:
		w, sw := random()
		if sw != swOK {
			return nil, sw
		}
		c.vol.mgmtWitness, c.vol.mgmtChallenge = w, nil
		return tlv(0x7C, tlv(0x80, encrypt(w))), swOK

	case hasWitness && hasChallenge && len(witness) > 0:
		expected := c.vol.mgmtWitness
		c.vol.mgmtWitness = nil
		if expected == nil {
			return nil, swConditions
		}
		if len(witness) != n || len(challenge) != n {
			return nil, swWrongData
		}
		if subtle.ConstantTimeCompare(witness, expected) != 1 {
			return nil, swSecurityStatus
		}
		c.vol.mgmtAuth = true
		return tlv(0x7C, tlv(0x82, encrypt(challenge))), swOK

	case hasChallenge && len(challenge) == 0 && !hasWitness:
		ch, sw := random()
		if sw != swOK {
			return nil, sw
		}
		c.vol.mgmtChallenge, c.vol.mgmtWitness = ch, nil
		return tlv(0x7C, tlv(0x81, ch)), swOK

	case hasResponse && len(response) > 0 && !hasWitness && !hasChallenge:
		ch := c.vol.mgmtChallenge
		c.vol.mgmtChallenge = nil
		if ch == nil {
			return nil, swConditions
		}
		if len(response) != n {
			return nil, swWrongData
		}
		if subtle.ConstantTimeCompare(response, encrypt(ch)) != 1 {
			return nil, swSecurityStatus
		}
		c.vol.mgmtAuth = true
		return nil, swOK
	}
	return nil, swWrongData
}

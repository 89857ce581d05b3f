package sim

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"fmt"
	"time"
)

// Asymmetric keys: GENERATE ASYMMETRIC KEY PAIR (SP 800-73-4 Part 2, 3.3.2),
// GENERAL AUTHENTICATE signatures and key agreement (3.2.4, with Part 2
// Appendix A.4/A.5 for ECDSA and ECC CDH), and the Yubico IMPORT ASYMMETRIC
// KEY (0xFE) and GET METADATA (0xF7) commands.

// isKeySlot reports whether slot can hold an asymmetric key: 9A, 9C, 9D, 9E,
// the retired key management slots 82..95 and the Yubico attestation slot F9.
func isKeySlot(slot byte) bool {
	switch {
	case slot == slotAuth, slot == slotSign, slot == slotKeyMgmt, slot == slotCardAuth, slot == slotAttest:
		return true
	case slot >= slotRetired1 && slot <= slotRetired20:
		return true
	}
	return false
}

// defaultPINPolicy is the YubiKey's PIN policy for a slot when none is given
// (Yubico, "PIV certificate slots"): 9C always, 9E never, F9 never, others
// once.
func defaultPINPolicy(slot byte) byte {
	switch slot {
	case slotSign:
		return pinPolicyAlways
	case slotCardAuth, slotAttest:
		return pinPolicyNever
	}
	return pinPolicyOnce
}

func curveFor(alg byte) elliptic.Curve {
	switch alg {
	case algP256:
		return elliptic.P256()
	case algP384:
		return elliptic.P384()
	}
	return nil
}

func algForCurve(k *ecdsa.PrivateKey) byte {
	switch k.Curve {
	case elliptic.P256():
		return algP256
	case elliptic.P384():
		return algP384
	}
	return 0
}

// policies reads the optional PIN (0xAA) and touch (0xAB) policy tags.
func policies(items []tlvItem, slot byte) (pin, touch byte, ok bool) {
	pin, touch = defaultPINPolicy(slot), touchPolicyNever
	if v, found := findTLV(items, 0xAA); found {
		if len(v) != 1 || v[0] > pinPolicyAlways { // 04/05 need a YubiKey Bio
			return 0, 0, false
		}
		if v[0] != pinPolicyDefault {
			pin = v[0]
		}
	}
	if v, found := findTLV(items, 0xAB); found {
		if len(v) != 1 || v[0] > touchPolicyCached {
			return 0, 0, false
		}
		if v[0] != touchPolicyDefault {
			touch = v[0]
		}
	}
	return pin, touch, true
}

// publicPoint is the uncompressed EC point 04||X||Y.
func publicPoint(k *ecdsa.PrivateKey) []byte {
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		// Only P-256 and P-384 keys reach here; both convert.
		panic(fmt.Sprintf("sim: converting public key: %v", err))
	}
	return pub.Bytes()
}

// generate is GENERATE ASYMMETRIC KEY PAIR (0x47). Data: AC L { 80 01 alg
// [AA 01 pin-policy] [AB 01 touch-policy] }. Response: 7F49 L { 86 L point }.
func (c *Card) generate(cmd command) ([]byte, uint16) {
	if !c.vol.mgmtAuth {
		return nil, swSecurityStatus
	}
	if cmd.p1 != 0x00 || !isKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	outer, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swWrongData
	}
	tmpl, ok := findTLV(outer, 0xAC)
	if !ok {
		return nil, swWrongData
	}
	items, err := parseTLVs(tmpl)
	if err != nil {
		return nil, swWrongData
	}
	alg, ok := findTLV(items, 0x80)
	if !ok || len(alg) != 1 || curveFor(alg[0]) == nil {
		return nil, swWrongData
	}
	pin, touch, ok := policies(items, cmd.p2)
	if !ok {
		return nil, swWrongData
	}
	priv, err := ecdsa.GenerateKey(curveFor(alg[0]), c.rand)
	if err != nil {
		c.logf("virtual YubiKey %d: generating key: %v", c.st.Serial, err)
		return nil, swMemoryFailure
	}
	k := &slotKey{Alg: alg[0], PINPolicy: pin, TouchPolicy: touch, Origin: originGenerated}
	if err := c.st.setKey(cmd.p2, k, priv); err != nil {
		c.logf("virtual YubiKey %d: %v", c.st.Serial, err)
		return nil, swMemoryFailure
	}
	c.dirty = true
	return tlv(0x7F49, tlv(0x86, publicPoint(priv))), swOK
}

// importKey is the Yubico IMPORT ASYMMETRIC KEY command (0xFE): P1
// algorithm, P2 slot, data 06 L private-scalar [AA 01 pin] [AB 01 touch].
// Only EC keys are supported.
func (c *Card) importKey(cmd command) ([]byte, uint16) {
	if !c.vol.mgmtAuth {
		return nil, swSecurityStatus
	}
	if !isKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	curve := curveFor(cmd.p1)
	if curve == nil {
		return nil, swIncorrectP1P2
	}
	items, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swWrongData
	}
	d, ok := findTLV(items, 0x06)
	if !ok || len(d) != (curve.Params().BitSize+7)/8 {
		return nil, swWrongData
	}
	pin, touch, ok := policies(items, cmd.p2)
	if !ok {
		return nil, swWrongData
	}
	priv, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		return nil, swWrongData
	}
	k := &slotKey{Alg: cmd.p1, PINPolicy: pin, TouchPolicy: touch, Origin: originImported}
	if err := c.st.setKey(cmd.p2, k, priv); err != nil {
		c.logf("virtual YubiKey %d: %v", c.st.Serial, err)
		return nil, swMemoryFailure
	}
	c.dirty = true
	return nil, swOK
}

// generalAuthenticate is GENERAL AUTHENTICATE (0x87): P1 algorithm, P2 key
// reference, data 7C L { ... } (dynamic authentication template).
func (c *Card) generalAuthenticate(cmd command) ([]byte, uint16) {
	outer, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swWrongData
	}
	tmpl, ok := findTLV(outer, 0x7C)
	if !ok {
		return nil, swWrongData
	}
	items, err := parseTLVs(tmpl)
	if err != nil {
		return nil, swWrongData
	}
	if cmd.p2 == refMgmt {
		return c.mgmtAuthenticate(cmd, items)
	}
	if !isKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	k := c.st.key(cmd.p2)
	if k == nil {
		return nil, swRefNotFound
	}
	if cmd.p1 != k.Alg {
		return nil, swWrongData
	}
	if resp, ok := findTLV(items, 0x82); !ok || len(resp) != 0 {
		return nil, swWrongData
	}
	// Check the data before the PIN policy: a malformed request must not
	// consume a PIN-always verification.
	challenge, isSign := findTLV(items, 0x81)
	peer, isECDH := findTLV(items, 0x85)
	size := (k.priv.Curve.Params().BitSize + 7) / 8
	switch {
	case isSign && !isECDH:
		if len(challenge) == 0 || len(challenge) > size {
			return nil, swWrongData
		}
	case isECDH && !isSign:
		if len(peer) != 1+2*size {
			return nil, swWrongData
		}
	default:
		return nil, swWrongData
	}
	if !c.pinPolicySatisfied(k.PINPolicy) {
		return nil, swSecurityStatus
	}
	// Touch (policies always/cached) is taken as given: there is no button.

	if isSign {
		// ECDSA over the digest as given; a digest shorter than the
		// curve order is the same integer left-padded (SP 800-73-4 Part 2,
		// A.4; FIPS 186-4 6.4).
		start := time.Now()
		sig, err := ecdsa.SignASN1(c.rand, k.priv, challenge)
		if err != nil {
			c.logf("virtual YubiKey %d: signing: %v", c.st.Serial, err)
			return nil, swMemoryFailure
		}
		// A real token's signing time; the card answers nothing meanwhile (mu is held).
		time.Sleep(c.signTime - time.Since(start))
		return tlv(0x7C, tlv(0x82, sig)), swOK
	}
	priv, err := k.priv.ECDH()
	if err != nil {
		return nil, swMemoryFailure
	}
	pub, err := ecdhCurve(k.Alg).NewPublicKey(peer)
	if err != nil {
		return nil, swWrongData
	}
	secret, err := priv.ECDH(pub)
	if err != nil {
		return nil, swWrongData
	}
	return tlv(0x7C, tlv(0x82, secret)), swOK
}

func ecdhCurve(alg byte) ecdh.Curve {
	if alg == algP384 {
		return ecdh.P384()
	}
	return ecdh.P256()
}

// pinPolicySatisfied applies a slot's PIN policy to the session: never needs
// nothing, once needs the PIN verified in this session, always needs a VERIFY
// as the command just before (and consumes it).
func (c *Card) pinPolicySatisfied(policy byte) bool {
	switch policy {
	case pinPolicyNever:
		return true
	case pinPolicyAlways:
		ok := c.vol.pinVerified && c.vol.pinJustVerified
		c.vol.pinJustVerified = false
		return ok
	default:
		return c.vol.pinVerified
	}
}

// metadata is the Yubico GET METADATA command (0xF7), P2 the key reference.
//
//	PIN/PUK: 01 algorithm (FF), 05 is-default, 06 retries (total, left)
//	9B:      01 algorithm, 02 policy (PIN never, touch), 05 is-default
//	slots:   01 algorithm, 02 policy (PIN, touch), 03 origin, 04 { 86 point }
func (c *Card) metadata(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x00 {
		return nil, swIncorrectP1P2
	}
	isDefault := func(b bool) []byte {
		if b {
			return []byte{0x01}
		}
		return []byte{0x00}
	}
	switch cmd.p2 {
	case refPIN, refPUK:
		ctr, _ := c.counterFor(cmd.p2)
		def := DefaultPIN
		if cmd.p2 == refPUK {
			def = DefaultPUK
		}
		var out []byte
		out = append(out, tlv(0x01, []byte{algPINPUK})...)
		out = append(out, tlv(0x05, isDefault(string(*ctr.value) == string(padPIN([]byte(def)))))...)
		out = append(out, tlv(0x06, []byte{byte(*ctr.total), byte(*ctr.left)})...)
		return out, swOK
	case refMgmt:
		var out []byte
		out = append(out, tlv(0x01, []byte{c.st.MgmtAlg})...)
		out = append(out, tlv(0x02, []byte{pinPolicyNever, c.st.MgmtTouch})...)
		out = append(out, tlv(0x05, isDefault(c.st.MgmtAlg == algTDES && string(c.st.MgmtKey) == string(defaultMgmtKey)))...)
		return out, swOK
	}
	if !isKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	k := c.st.key(cmd.p2)
	if k == nil {
		return nil, swRefNotFound
	}
	var out []byte
	out = append(out, tlv(0x01, []byte{k.Alg})...)
	out = append(out, tlv(0x02, []byte{k.PINPolicy, k.TouchPolicy})...)
	out = append(out, tlv(0x03, []byte{k.Origin})...)
	out = append(out, tlv(0x04, tlv(0x86, publicPoint(k.priv)))...)
	return out, swOK
}

// getVersion is the Yubico GET VERSION command (0xFD): three bytes.
func (c *Card) getVersion(command) ([]byte, uint16) {
	return firmware[:], swOK
}

// getSerial is the Yubico GET SERIAL command (0xF8): four bytes, big-endian.
func (c *Card) getSerial(command) ([]byte, uint16) {
	return binary.BigEndian.AppendUint32(nil, c.st.Serial), swOK
}

package sim

import (
	"bytes"
	"encoding/binary"
)

// Applications and data objects: SELECT (SP 800-73-4 Part 2, 3.1.1), GET DATA
// (3.1.2), PUT DATA (3.3.1), and the YubiKey management application's device
// information (Yubico, "Management application: read config").

// selectApplet is SELECT by AID (P1 04). A failed selection leaves the
// current application selected (ISO/IEC 7816-4 7.1.1). Switching between
// applications keeps the PIV session state: piv-go reads the form factor
// from the management application in the middle of a session.
func (c *Card) selectApplet(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x04 {
		return nil, swIncorrectP1P2
	}
	switch {
	case len(cmd.data) >= len(aidPIV) && bytes.HasPrefix(cmd.data, aidPIV):
		c.vol.applet = appletPIV
		// Application property template: PIX of the application
		// (application version 01 00) and the coexistent tag allocation
		// authority (the NIST RID).
		aid := tlv(0x4F, []byte{0x00, 0x00, 0x10, 0x00, 0x01, 0x00})
		authority := tlv(0x79, tlv(0x4F, aidPIV))
		return tlv(0x61, append(aid, authority...)), swOK
	case bytes.HasPrefix(cmd.data, aidManagement):
		c.vol.applet = appletMgmt
		return []byte{'0' + firmware[0], '.', '0' + firmware[1], '.', '0' + firmware[2]}, swOK
	}
	return nil, swNotFound
}

// deviceInfo is the management application's READ CONFIG (0x1D): one length
// byte, then 01 USB capabilities, 02 serial, 03 USB enabled, 04 form factor,
// 05 firmware version, 0A configuration lock.
func (c *Card) deviceInfo(command) ([]byte, uint16) {
	const usbApps = 0x023F // OTP, U2F, OpenPGP, PIV, OATH, FIDO2
	var info []byte
	info = append(info, tlv(0x01, binary.BigEndian.AppendUint16(nil, usbApps))...)
	info = append(info, tlv(0x02, binary.BigEndian.AppendUint32(nil, c.st.Serial))...)
	info = append(info, tlv(0x03, binary.BigEndian.AppendUint16(nil, usbApps))...)
	info = append(info, tlv(0x04, []byte{c.st.FormFactor})...)
	info = append(info, tlv(0x05, firmware[:])...)
	info = append(info, tlv(0x0A, []byte{0x00})...)
	return append([]byte{byte(len(info))}, info...), swOK
}

// objectID validates a 3-byte data object identifier: the PIV objects
// 5FC101..5FC123 (SP 800-73-4 Part 1, Table 3) and Yubico's 5FFF00..5FFF15.
func objectID(tag []byte) (uint32, bool) {
	if len(tag) != 3 || tag[0] != 0x5F {
		return 0, false
	}
	id := uint32(tag[0])<<16 | uint32(tag[1])<<8 | uint32(tag[2])
	switch {
	case id >= 0x5FC101 && id <= 0x5FC123:
		return id, true
	case id >= 0x5FFF00 && id <= 0x5FFF15:
		return id, true
	}
	return 0, false
}

// pinProtected lists the objects that need the PIN to be read (SP 800-73-4
// Part 1, Table 2: access rule "PIN").
func pinProtected(id uint32) bool {
	switch id {
	case objPrinted, objFingerprint, objFacial, objIris:
		return true
	}
	return false
}

// getData is GET DATA (0xCB, P1P2 3FFF), data 5C L tag. Objects answer
// 53 L value; the Discovery Object answers 7E L value; a missing object is
// 6A82.
func (c *Card) getData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
		return nil, swIncorrectP1P2
	}
	items, err := parseTLVs(cmd.data)
	if err != nil || len(items) != 1 || items[0].tag != 0x5C {
		return nil, swWrongData
	}
	tag := items[0].value
	if len(tag) == 1 && tag[0] == objDiscovery {
		return tlv(objDiscovery, discoveryObject), swOK
	}
	id, ok := objectID(tag)
	if !ok {
		return nil, swNotFound
	}
	if pinProtected(id) && !c.vol.pinVerified {
		return nil, swSecurityStatus
	}
	v, ok := c.st.Objects[objectName(id)]
	if !ok {
		return nil, swNotFound
	}
	return tlv(0x53, v), swOK
}

// putData is PUT DATA (0xDB, P1P2 3FFF), data 5C L tag 53 L value; it needs
// the management key. An empty value deletes the object.
func (c *Card) putData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3F || cmd.p2 != 0xFF {
		return nil, swIncorrectP1P2
	}
	if !c.vol.mgmtAuth {
		return nil, swSecurityStatus
	}
	items, err := parseTLVs(cmd.data)
	if err != nil || len(items) != 2 || items[0].tag != 0x5C || items[1].tag != 0x53 {
		return nil, swWrongData
	}
	id, ok := objectID(items[0].value)
	if !ok {
		return nil, swWrongData
	}
	v := items[1].value
	if len(v) > maxObjectSize {
		return nil, swNoSpace
	}
	if len(v) == 0 {
		delete(c.st.Objects, objectName(id))
	} else {
		c.st.Objects[objectName(id)] = bytes.Clone(v)
	}
	c.dirty = true
	return nil, swOK
}

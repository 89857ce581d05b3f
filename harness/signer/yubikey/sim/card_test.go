package sim

import (
	"bytes"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Unit tests of the applet through Card.APDU, without pcscd.

// send sends a command given in hex (spaces allowed) and returns data and SW.
func send(t *testing.T, c *Card, cmdHex string) ([]byte, uint16) {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(cmdHex, " ", ""))
	if err != nil {
		t.Fatalf("bad test APDU %q: %v", cmdHex, err)
	}
	return sendRaw(t, c, b)
}

func sendRaw(t *testing.T, c *Card, cmd []byte) ([]byte, uint16) {
	t.Helper()
	r := c.APDU(cmd)
	if len(r) < 2 {
		t.Fatalf("response %x shorter than a status word", r)
	}
	return r[:len(r)-2], uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
}

func expectSW(t *testing.T, c *Card, cmdHex string, want uint16) []byte {
	t.Helper()
	data, sw := send(t, c, cmdHex)
	if sw != want {
		t.Fatalf("%s: SW %04X, want %04X", cmdHex, sw, want)
	}
	return data
}

func newTestCard(t *testing.T) *Card {
	t.Helper()
	c, err := New(Options{Serial: 4242, Logf: t.Logf})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func selectPIV(t *testing.T, c *Card) {
	t.Helper()
	expectSW(t, c, "00A4040005A000000308", swOK)
}

// cmd builds a short APDU with data.
func cmd(ins, p1, p2 byte, data []byte) []byte {
	out := []byte{0x00, ins, p1, p2}
	if len(data) > 0 {
		out = append(out, byte(len(data)))
		out = append(out, data...)
	}
	return out
}

// authMgmt runs the mutual 3DES authentication with key.
func authMgmt(t *testing.T, c *Card, key []byte) uint16 {
	t.Helper()
	block, err := des.NewTripleDESCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	data, sw := send(t, c, "0087039B047C028000")
	if sw != swOK || len(data) != 12 || !bytes.Equal(data[:4], []byte{0x7C, 0x0A, 0x80, 0x08}) {
		t.Fatalf("witness request: %x %04X", data, sw)
	}
	witness := make([]byte, 8)
	block.Decrypt(witness, data[4:])
	challenge := make([]byte, 8)
	_, _ = rand.Read(challenge)
	req := append([]byte{0x7C, 0x14, 0x80, 0x08}, witness...)
	req = append(req, 0x81, 0x08)
	req = append(req, challenge...)
	data, sw = sendRaw(t, c, cmd(0x87, 0x03, 0x9B, req))
	if sw != swOK {
		return sw
	}
	want := make([]byte, 8)
	block.Encrypt(want, challenge)
	if !bytes.Equal(data, append([]byte{0x7C, 0x0A, 0x82, 0x08}, want...)) {
		t.Fatalf("card response to the challenge %x, want Enc(challenge)", data)
	}
	return sw
}

func TestSelectVersionSerial(t *testing.T) {
	c := newTestCard(t)
	expectSW(t, c, "00FD000000", swInsNotSupported) // nothing selected yet
	got := expectSW(t, c, "00A4040005A000000308", swOK)
	want, _ := hex.DecodeString("61114F0600001000010079074F05A000000308")
	if !bytes.Equal(got, want) {
		t.Errorf("SELECT PIV answered %x, want %x", got, want)
	}
	if v := expectSW(t, c, "00FD000000", swOK); !bytes.Equal(v, []byte{5, 4, 3}) {
		t.Errorf("GET VERSION = %x", v)
	}
	if s := expectSW(t, c, "00F8000000", swOK); !bytes.Equal(s, []byte{0, 0, 0x10, 0x92}) {
		t.Errorf("GET SERIAL = %x", s)
	}
	expectSW(t, c, "00A4040005A000000999", swNotFound)
	// The management application answers the device info (form factor).
	expectSW(t, c, "00A4040008A000000527471117", swOK)
	info := expectSW(t, c, "001D000000", swOK)
	items, err := parseTLVs(info[1:])
	if err != nil || int(info[0]) != len(info)-1 {
		t.Fatalf("device info %x: %v", info, err)
	}
	if ff, _ := findTLV(items, 0x04); !bytes.Equal(ff, []byte{FormFactorUSBAKeychain}) {
		t.Errorf("form factor %x", ff)
	}
	expectSW(t, c, "00FD000000", swInsNotSupported) // PIV commands need PIV selected
}

func TestAPDUFraming(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	expectSW(t, c, "00FD00", swWrongLength)
	expectSW(t, c, "00CB3FFF055C03", swWrongLength) // Lc larger than the data
	expectSW(t, c, "80FD000000", swClaNotSupported) // proprietary class
	expectSW(t, c, "00FD0000", swOK)                // case 1, no Le
	// Case 4 with a trailing Le, and an extended-length GET DATA.
	expectSW(t, c, "00CB3FFF025C0000", swNotFound) // 5C with no tag value, Le
	expectSW(t, c, "00CB3FFF035C017E00", swOK)
	expectSW(t, c, "00CB3FFF0000035C017E0000", swOK)
	expectSW(t, c, "00C0000000", swConditions) // nothing to GET RESPONSE
	expectSW(t, c, "00EE000000", swInsNotSupported)
}

func TestVerifyCounter(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	expectSW(t, c, "0020008000", 0x63C3)
	wrong := hex.EncodeToString(padPIN([]byte("1")))
	right := hex.EncodeToString(padPIN([]byte(DefaultPIN)))
	expectSW(t, c, "0020008008"+wrong, 0x63C2)
	expectSW(t, c, "0020008008"+right, swOK)
	expectSW(t, c, "0020008000", swOK) // verified in this session
	expectSW(t, c, "002000800400000000", swWrongData)
	expectSW(t, c, "0020FF8000", swOK) // reset security status
	expectSW(t, c, "0020008000", 0x63C3)
	expectSW(t, c, "0020008108"+right, swRefNotFound) // VERIFY only knows the PIN

	for _, want := range []uint16{0x63C2, 0x63C1, 0x63C0, swAuthBlocked} {
		expectSW(t, c, "0020008008"+wrong, want)
	}
	expectSW(t, c, "0020008008"+right, swAuthBlocked)
	expectSW(t, c, "0020008000", swAuthBlocked)
	expectSW(t, c, "00FB000000", swConditions) // RESET needs the PUK blocked too

	// RESET RETRY COUNTER: wrong PUK counts down; a short new PIN is refused.
	puk := hex.EncodeToString(padPIN([]byte(DefaultPUK)))
	expectSW(t, c, "002C008010"+wrong+right, 0x63C2)
	expectSW(t, c, "002C008010"+puk+hex.EncodeToString(padPIN([]byte("12345"))), swWrongData)
	expectSW(t, c, "002C008010"+puk+hex.EncodeToString(padPIN([]byte("87654321"))), swOK)
	if pin, p := c.Retries(); pin != 3 || p != 3 {
		t.Errorf("retries after unblock = %d, %d", pin, p)
	}
	expectSW(t, c, "0020008008"+hex.EncodeToString([]byte("87654321")), swOK)
}

func TestManagementKeyAuthentication(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	gen := "004700 9A 05 AC03800111"
	expectSW(t, c, strings.ReplaceAll(gen, " ", ""), swSecurityStatus)
	bad := bytes.Repeat([]byte{0x11}, 24)
	if sw := authMgmt(t, c, bad); sw != swSecurityStatus {
		t.Fatalf("authentication with a wrong key: SW %04X, want 6982", sw)
	}
	zeros := strings.Repeat("00", 8)
	expectSW(t, c, "0087039B167C148008"+zeros+"8108"+zeros, swConditions) // no witness pending
	expectSW(t, c, "0087089B047C028000", swIncorrectP1P2)                 // AES, but the key is 3DES
	if sw := authMgmt(t, c, defaultMgmtKey); sw != swOK {
		t.Fatalf("authentication with the default key: SW %04X", sw)
	}
	pub := expectSW(t, c, "0047009A05AC03800111", swOK)
	if len(pub) != 2+1+2+65 || pub[0] != 0x7F || pub[1] != 0x49 || pub[2] != 0x43 || pub[3] != 0x86 || pub[4] != 0x41 {
		t.Errorf("GENERATE answered %x, want 7F49 43 86 41 04...", pub)
	}

	// Single (external) authentication works as well.
	c.WarmReset()
	selectPIV(t, c)
	ch := expectSW(t, c, "0087039B047C028100", swOK)
	block, _ := des.NewTripleDESCipher(defaultMgmtKey)
	enc := make([]byte, 8)
	block.Encrypt(enc, ch[4:])
	expectSW(t, c, "0087039B0C7C0A8208"+hex.EncodeToString(enc), swOK)
	expectSW(t, c, "0047009E05AC03800114", swOK) // P-384
}

func TestPINPolicies(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	authMgmt(t, c, defaultMgmtKey)
	// 9A PIN never, 9C default (always), 9D once.
	expectSW(t, c, "0047009A08AC06800111AA0101", swOK)
	expectSW(t, c, "0047009C05AC03800111", swOK)
	expectSW(t, c, "0047009D08AC06800111AA0102", swOK)
	expectSW(t, c, "0047009D08AC06800111AA0104", swWrongData) // match policies need a Bio
	digest := sha256.Sum256([]byte("x"))
	sign := func(slot string) string {
		return "00871 1" + slot + "267C24820081 20" + hex.EncodeToString(digest[:])
	}
	s := func(x string) string { return strings.ReplaceAll(x, " ", "") }
	right := hex.EncodeToString(padPIN([]byte(DefaultPIN)))

	expectSW(t, c, s(sign("9A")), swOK)
	expectSW(t, c, s(sign("9C")), swSecurityStatus)
	expectSW(t, c, s(sign("9D")), swSecurityStatus)
	expectSW(t, c, "0020008008"+right, swOK)
	expectSW(t, c, s(sign("9C")), swOK)             // right after VERIFY
	expectSW(t, c, s(sign("9C")), swSecurityStatus) // consumed
	expectSW(t, c, s(sign("9D")), swOK)             // once: the session stays verified
	expectSW(t, c, "0020008008"+right, swOK)
	expectSW(t, c, "00FD000000", swOK)
	expectSW(t, c, s(sign("9C")), swSecurityStatus) // not the command just before
	expectSW(t, c, s(sign("9E")), swRefNotFound)    // empty slot
	expectSW(t, c, s("00871 4 9A267C24820081 20"+hex.EncodeToString(digest[:])), swWrongData)

	// Metadata reflects the policies and the origin.
	md := expectSW(t, c, "00F7009C00", swOK)
	items, err := parseTLVs(md)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := findTLV(items, 0x02); !bytes.Equal(p, []byte{pinPolicyAlways, touchPolicyNever}) {
		t.Errorf("9C policy %x", p)
	}
	expectSW(t, c, "00F7009E00", swRefNotFound)
	pinMD := expectSW(t, c, "00F7008000", swOK)
	if !bytes.Equal(pinMD, []byte{0x01, 0x01, 0xFF, 0x05, 0x01, 0x01, 0x06, 0x02, 0x03, 0x03}) {
		t.Errorf("PIN metadata %x", pinMD)
	}
	mgmtMD := expectSW(t, c, "00F7009B00", swOK)
	if len(mgmtMD) < 3 || mgmtMD[2] != algTDES {
		t.Errorf("9B metadata %x: piv-go reads the algorithm at offset 2", mgmtMD)
	}
}

func TestChainingAndGetResponse(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	value := make([]byte, 2000)
	_, _ = rand.Read(value)
	obj := append([]byte{0x5C, 0x03, 0x5F, 0xC1, 0x05}, tlv(0x53, value)...)
	expectSW(t, c, "00DB3FFF"+"05"+hex.EncodeToString(obj[:5]), swSecurityStatus)
	authMgmt(t, c, defaultMgmtKey)

	putChained := func(data []byte) uint16 {
		for len(data) > 255 {
			part := append([]byte{0x10, 0xDB, 0x3F, 0xFF, 0xFF}, data[:255]...)
			if _, sw := sendRaw(t, c, part); sw != swOK {
				t.Fatalf("chained part: SW %04X", sw)
			}
			data = data[255:]
		}
		_, sw := sendRaw(t, c, cmd(0xDB, 0x3F, 0xFF, data))
		return sw
	}
	if sw := putChained(obj); sw != swOK {
		t.Fatalf("PUT DATA: SW %04X", sw)
	}

	// Read back: 256 bytes at a time with 61xx, as piv-go and libykpiv do.
	resp, sw := send(t, c, "00CB3FFF055C035FC105")
	for sw&0xFF00 == 0x6100 {
		if len(resp)%maxResponseChunk != 0 {
			t.Fatalf("chunk of %d bytes before 61xx", len(resp)%maxResponseChunk)
		}
		var more []byte
		more, sw = send(t, c, "00C0000000")
		resp = append(resp, more...)
	}
	if sw != swOK || !bytes.Equal(resp, tlv(0x53, value)) {
		t.Fatalf("GET DATA after chaining: SW %04X, %d bytes, want %d", sw, len(resp), len(value)+4)
	}
	// A different command discards what is pending.
	send(t, c, "00CB3FFF055C035FC105")
	expectSW(t, c, "00FD000000", swOK)
	expectSW(t, c, "00C0000000", swConditions)

	// A chain must end with the same instruction.
	sendRaw(t, c, append([]byte{0x10, 0xDB, 0x3F, 0xFF, 0x03}, 1, 2, 3))
	expectSW(t, c, "00FD000000", swLastCmdExpected)

	// Too large, and delete with an empty value.
	big := append([]byte{0x5C, 0x03, 0x5F, 0xC1, 0x05}, tlv(0x53, make([]byte, maxObjectSize+1))...)
	if sw := putChained(big); sw != swNoSpace {
		t.Errorf("oversized PUT DATA: SW %04X, want 6A84", sw)
	}
	expectSW(t, c, "00DB3FFF075C035FC1055300", swOK)
	expectSW(t, c, "00CB3FFF055C035FC105", swNotFound)
	expectSW(t, c, "00DB3FFF075C035FC1995300", swWrongData) // not a PIV object
}

func TestPINProtectedObject(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	authMgmt(t, c, defaultMgmtKey)
	expectSW(t, c, "00DB3FFF0B5C035FC10953048802 8900", swOK)
	expectSW(t, c, "00CB3FFF055C035FC109", swSecurityStatus)
	expectSW(t, c, "0020008008"+hex.EncodeToString(padPIN([]byte(DefaultPIN))), swOK)
	if got := expectSW(t, c, "00CB3FFF055C035FC109", swOK); !bytes.Equal(got, []byte{0x53, 0x04, 0x88, 0x02, 0x89, 0x00}) {
		t.Errorf("printed information object = %x", got)
	}
}

func TestImportAndAttest(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	authMgmt(t, c, defaultMgmtKey)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := make([]byte, 32)
	key.D.FillBytes(d)
	imp := append(tlv(0x06, d), 0xAA, 0x01, pinPolicyNever, 0xAB, 0x01, touchPolicyNever)
	if _, sw := sendRaw(t, c, cmd(0xFE, algP256, 0x9D, imp)); sw != swOK {
		t.Fatalf("IMPORT: SW %04X", sw)
	}
	expectSW(t, c, "00F99D0000", swWrongData) // imported keys are not attested
	expectSW(t, c, "00F99A0000", swWrongData) // empty slot
	expectSW(t, c, "00F9F90000", swIncorrectP1P2)
	digest := sha256.Sum256([]byte("imported"))
	sig := expectSW(t, c, "008711 9D267C2482008120"+hex.EncodeToString(digest[:]), swOK)
	items, err := parseTLVs(sig[2:])
	if err != nil {
		t.Fatal(err)
	}
	der, _ := findTLV(items, 0x82)
	if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], der) {
		t.Errorf("signature with the imported key does not verify")
	}

	expectSW(t, c, "0047009A05AC03800111", swOK)
	resp, sw := send(t, c, "00F99A0000")
	for sw&0xFF00 == 0x6100 {
		var more []byte
		more, sw = send(t, c, "00C0000000")
		resp = append(resp, more...)
	}
	if sw != swOK {
		t.Fatalf("ATTEST: SW %04X", sw)
	}
	cert, err := x509.ParseCertificate(resp)
	if err != nil {
		t.Fatalf("parsing attestation: %v", err)
	}
	if cert.Subject.CommonName != "YubiKey PIV Attestation 9a" {
		t.Errorf("attestation subject %q", cert.Subject.CommonName)
	}
	f9 := c.st.Objects[objectName(objAttestation)]
	items, _ = parseTLVs(f9)
	f9der, _ := findTLV(items, 0x70)
	f9cert, err := x509.ParseCertificate(f9der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(f9cert); err != nil {
		t.Errorf("attestation not signed by the f9 key: %v", err)
	}
	if err := f9cert.CheckSignatureFrom(c.AttestationRoot()); err != nil {
		t.Errorf("f9 certificate not signed by the root: %v", err)
	}
}

func TestResetWhenBlocked(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	authMgmt(t, c, defaultMgmtKey)
	expectSW(t, c, "0047009C05AC03800111", swOK)
	wrong := hex.EncodeToString(padPIN([]byte("0")))
	for range 3 {
		send(t, c, "0020008008"+wrong)
		send(t, c, "0024008110"+wrong+wrong)
	}
	expectSW(t, c, "00FB000000", swOK)
	expectSW(t, c, "00F7009C00", swRefNotFound)
	expectSW(t, c, "00F700F900", swOK) // factory attestation key restored
	expectSW(t, c, "0020008008"+hex.EncodeToString(padPIN([]byte(DefaultPIN))), swOK)
}

func TestOpenPersistsAndRollsBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "card", "yk.json")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, Options{Serial: 99, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Open (create): %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	selectPIV(t, c)
	expectSW(t, c, "0020008008"+hex.EncodeToString(padPIN([]byte("0"))), 0x63C2)

	again, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open (load): %v", err)
	}
	if pin, _ := again.Retries(); pin != 2 || again.Serial() != 99 {
		t.Errorf("reloaded card: serial %d, PIN retries %d; want 99, 2", again.Serial(), pin)
	}
	if !again.AttestationRoot().Equal(c.AttestationRoot()) {
		t.Errorf("reloaded card has another attestation root")
	}
	if _, err := Open(path, Options{Serial: 100}); err == nil {
		t.Errorf("Open with another serial succeeded")
	}
	// A failed write answers 6581 and leaves the card as it was.
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	expectSW(t, c, "0020008008"+hex.EncodeToString(padPIN([]byte("0"))), swMemoryFailure)
	if pin, _ := c.Retries(); pin != 2 {
		t.Errorf("PIN retries after a failed write = %d, want 2 (rolled back)", pin)
	}
	if _, err := Open(filepath.Join(dir, "missing", "yk.json"), Options{}); err == nil {
		t.Errorf("Open in a missing directory succeeded")
	}
}

func TestSetManagementKeyAES(t *testing.T) {
	c := newTestCard(t)
	selectPIV(t, c)
	key := bytes.Repeat([]byte{0x42}, 16)
	expectSW(t, c, "00FFFFFF13089B10"+hex.EncodeToString(key), swSecurityStatus)
	authMgmt(t, c, defaultMgmtKey)
	expectSW(t, c, "00FFFFFF13089B0F"+hex.EncodeToString(key), swWrongData)
	expectSW(t, c, "00FFFFFF13089B10"+hex.EncodeToString(key), swOK)
	md := expectSW(t, c, "00F7009B00", swOK)
	if md[2] != algAES128 {
		t.Errorf("9B metadata algorithm %02x, want AES-128", md[2])
	}
	w := expectSW(t, c, "0087089B047C028000", swOK)
	if len(w) != 20 || w[1] != 0x12 || w[3] != 0x10 {
		t.Errorf("AES witness %x, want 16 bytes", w)
	}
}

// FuzzAPDU: no command sequence makes the card panic or answer without a
// status word.
func FuzzAPDU(f *testing.F) {
	for _, s := range []string{
		"00A4040005A000000308", "0087039B047C028000", "00CB3FFF055C035FC10A",
		"10DB3FFF035C0300", "0047009A05AC03800111", "00F99A0000", "0020008000",
		"00DB3FFF075C035FC1055381", "0087119C047C028200", "00CB3FFF0000",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	c, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	c.APDU([]byte{0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r := c.APDU(b); len(r) < 2 {
			t.Fatalf("APDU(%x) = %x", b, r)
		}
	})
}

func TestSharedAttestationCA(t *testing.T) {
	ca, err := GenerateCA(nil, time.Now())
	if err != nil {
		t.Fatalf("GenerateCA: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if loaded.Certificate.Subject.CommonName != RootCommonName {
		t.Errorf("root subject %q", loaded.Certificate.Subject.CommonName)
	}
	for _, serial := range []uint32{1, 2} {
		c, err := New(Options{Serial: serial, AttestationCA: loaded})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if !c.AttestationRoot().Equal(ca.Certificate) {
			t.Errorf("card %d does not use the shared root", serial)
		}
	}
	if _, err := LoadCA([]byte("junk"), nil); err == nil {
		t.Errorf("LoadCA accepted junk")
	}
}

// TestSignTime: with SignTime each signature takes at least that long (a lower bound the sleep
// guarantees whatever the machine's load), and other commands do not.
func TestSignTime(t *testing.T) {
	t.Parallel()
	const signTime = 40 * time.Millisecond
	c, err := New(Options{Serial: 4243, Logf: t.Logf, SignTime: signTime})
	if err != nil {
		t.Fatal(err)
	}
	selectPIV(t, c)
	authMgmt(t, c, defaultMgmtKey)
	expectSW(t, c, "0047009A08AC06800111AA0101", swOK) // P-256 in 9A, PIN never
	digest := sha256.Sum256([]byte("x"))
	sign := strings.ReplaceAll("00871 19A267C24820081 20"+hex.EncodeToString(digest[:]), " ", "")
	for range 3 {
		start := time.Now()
		expectSW(t, c, sign, swOK)
		if d := time.Since(start); d < signTime {
			t.Errorf("a signature took %v, SignTime is %v", d, signTime)
		}
	}
}

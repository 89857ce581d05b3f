package sim

// Protocol constants. Instructions and tags come from NIST SP 800-73-4 Part 2
// (PIV card commands) and NIST SP 800-78-4 (algorithm identifiers); the
// YubiKey extensions (INS 0xF7..0xFF) from Yubico's "PIV commands"
// reference (docs.yubico.com, YubiKey SDK, application-piv/apdu).

// atr is the answer-to-reset of a YubiKey 5 (CCID interface). It offers T=1,
// which both piv-go and yubico-piv-tool ask for.
var atr = []byte{
	0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0,
	0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40,
}

// firmware is the version the card reports (GET VERSION and the attestation
// firmware extension). 5.4.3 has metadata (>= 5.3) and a 3DES default
// management key (< 5.7).
var firmware = [3]byte{5, 4, 3}

// DefaultSerial is the serial number of a card created without
// Options.Serial.
const DefaultSerial uint32 = 10_000_001

// Default credentials of a new or reset card (Yubico, "PIV PIN, PUK and
// management key defaults").
const (
	DefaultPIN = "123456"
	DefaultPUK = "12345678"
	// DefaultManagementKeyHex is the default 3DES management key.
	DefaultManagementKeyHex = "010203040506070801020304050607080102030405060708"
)

var defaultMgmtKey = []byte{
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
}

// DefaultRetries is the PIN and PUK retry count of a new or reset card.
const DefaultRetries = 3

// Application identifiers.
var (
	// aidPIV is the NIST RID, the part of the PIV AID A0 00 00 03 08 00 00
	// 10 00 01 00 (SP 800-73-4 Part 1, 2.2) that clients must send; SELECT
	// matches it as a prefix (right truncation, ISO/IEC 7816-4 12.2.2).
	aidPIV = []byte{0xA0, 0x00, 0x00, 0x03, 0x08}
	// aidManagement is the YubiKey management application.
	aidManagement = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}
)

// Instructions.
const (
	insVerify       = 0x20 // SP 800-73-4 Part 2, 3.2.1
	insChangeRef    = 0x24 // 3.2.2
	insResetRetry   = 0x2C // 3.2.3
	insGenerate     = 0x47 // 3.3.2
	insGeneralAuth  = 0x87 // 3.2.4
	insSelect       = 0xA4 // 3.1.1
	insGetResponse  = 0xC0 // ISO/IEC 7816-4 7.6.1
	insGetData      = 0xCB // 3.1.2
	insPutData      = 0xDB // 3.3.1
	insDeviceInfo   = 0x1D // YubiKey management application: read device info
	insGetMetadata  = 0xF7 // Yubico extensions from here on
	insGetSerial    = 0xF8
	insAttest       = 0xF9
	insSetRetries   = 0xFA
	insReset        = 0xFB
	insGetVersion   = 0xFD
	insImportKey    = 0xFE
	insSetMgmtKey   = 0xFF
	claChainingFlag = 0x10 // ISO/IEC 7816-4 5.1.1: command chaining
)

// Key references (SP 800-73-4 Part 1, Table 4; Yubico for 0xF9).
const (
	refPIN        = 0x80
	refPUK        = 0x81
	refMgmt       = 0x9B
	slotAuth      = 0x9A
	slotSign      = 0x9C
	slotKeyMgmt   = 0x9D
	slotCardAuth  = 0x9E
	slotAttest    = 0xF9
	slotRetired1  = 0x82
	slotRetired20 = 0x95
)

// Algorithm identifiers (SP 800-78-4 Table 6-2; AES management keys are
// YubiKey 5.4+).
const (
	algTDES   = 0x03
	algAES128 = 0x08
	algAES192 = 0x0A
	algAES256 = 0x0C
	algP256   = 0x11
	algP384   = 0x14
	algPINPUK = 0xFF // metadata algorithm of PIN and PUK
)

// PIN, touch and origin values (Yubico "PIV commands: metadata").
const (
	pinPolicyDefault = 0x00
	pinPolicyNever   = 0x01
	pinPolicyOnce    = 0x02
	pinPolicyAlways  = 0x03

	touchPolicyDefault = 0x00
	touchPolicyNever   = 0x01
	touchPolicyAlways  = 0x02
	touchPolicyCached  = 0x03

	originGenerated = 0x01
	originImported  = 0x02
)

// Data object identifiers (SP 800-73-4 Part 1, Table 3; Yubico 0x5FFFxx).
const (
	objPrinted     = 0x5FC109
	objFingerprint = 0x5FC103
	objFacial      = 0x5FC108
	objIris        = 0x5FC121
	objAttestation = 0x5FFF01
	objDiscovery   = 0x7E
)

// Status words (ISO/IEC 7816-4 5.1.3; SP 800-73-4 Part 2, Table 6).
const (
	swOK               = 0x9000
	swMemoryFailure    = 0x6581
	swWrongLength      = 0x6700
	swLastCmdExpected  = 0x6883
	swSecurityStatus   = 0x6982
	swAuthBlocked      = 0x6983
	swConditions       = 0x6985
	swWrongData        = 0x6A80
	swNotFound         = 0x6A82
	swNoSpace          = 0x6A84
	swIncorrectP1P2    = 0x6A86
	swRefNotFound      = 0x6A88
	swInsNotSupported  = 0x6D00
	swClaNotSupported  = 0x6E00
	swVerifyFailedBase = 0x63C0
)

// Limits.
const (
	maxResponseChunk = 256      // data bytes per R-APDU; yubico-piv-tool 2.2.0 reads <= 261
	maxObjectSize    = 3063     // YubiKey object limit (yubico-piv-tool CB_OBJ_MAX)
	maxChainedData   = 16 << 10 // refuse absurd chains
)

// discoveryObject is the YubiKey's Discovery Object (SP 800-73-4 Part 1,
// 3.3.2): the PIV AID and PIN usage policy 0x4000 (PIV PIN only).
var discoveryObject = []byte{
	0x4F, 0x0B, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
	0x5F, 0x2F, 0x02, 0x40, 0x00,
}

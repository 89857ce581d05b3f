package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"strings"
)

// This file turns the profile's extension section (-extfile device.conf
// -extensions req_ext) into extension templates, and the templates into the
// extensions OpenSSL 3.0's `x509 -req` would write: same order, criticality
// and DER. Semantics mirror OpenSSL's v3_conf.c, v3_bcons.c, v3_bitst.c,
// v3_extku.c, v3_skid.c, v3_akid.c, v3_san.c and asn1_gen.c; TestIssueExtensionVariants
// compares the result byte for byte with the real openssl.

type extKind int

const (
	extStatic   extKind = iota // value fixed when the profile is loaded
	extSKIDHash                // subjectKeyIdentifier = hash: SHA-1 of the subject key
	extAKID                    // authorityKeyIdentifier: depends on the DAK certificate
)

// Extension is one extension the profile's section asks for, as parsed.
type Extension struct {
	Name     string                // key as written in the profile ("basicConstraints", "1.2.3.4")
	OID      asn1.ObjectIdentifier // extension type
	Critical bool
	Line     int // line in the profile

	kind  extKind
	value []byte // extnValue contents for extStatic
	// authorityKeyIdentifier options: 0 absent, 1 requested, 2 "always".
	akidKeyID, akidIssuer int
}

// RFC 5280 AuthorityKeyIdentifier options as openssl writes them for a
// missing section entry (do_X509_sign's default "keyid, issuer").
var defaultAKID = Extension{Name: "authorityKeyIdentifier", OID: oidExtAuthorityKeyID, kind: extAKID, akidKeyID: 1, akidIssuer: 1}

// buildContext is what the dynamic extensions need at issuance time.
type buildContext struct {
	subjectKeyBits []byte            // subject public key BIT STRING contents (no unused-bits octet)
	issuer         *x509.Certificate // the DAK certificate
	issuerSerial   []byte            // DER INTEGER content octets of the DAK serial
}

// build returns the DER extnValue for this issuance.
func (e *Extension) build(ctx *buildContext) ([]byte, error) {
	switch e.kind {
	case extSKIDHash:
		// RFC 5280 4.2.1.2 method (1), as OpenSSL's "hash".
		sum := sha1.Sum(ctx.subjectKeyBits)
		return derOctetString(sum[:]), nil
	case extAKID:
		return e.buildAKID(ctx)
	default:
		return e.value, nil
	}
}

// buildAKID follows OpenSSL 3.0's v2i_AUTHORITY_KEYID (observed with 3.0.19):
// keyid takes the DAK's subjectKeyIdentifier; it is an error to ask for keyid
// when the DAK has none unless issuer is also requested; issuer (DAK's
// issuer name and serial) is added when asked "always", or when asked and no
// keyid was found.
func (e *Extension) buildAKID(ctx *buildContext) ([]byte, error) {
	var keyID []byte
	if e.akidKeyID > 0 {
		keyID = ctx.issuer.SubjectKeyId
		if len(keyID) == 0 {
			keyID = nil
			if e.akidKeyID == 2 || e.akidIssuer == 0 {
				return nil, fmt.Errorf("%s (line %d): %w", e.Name, e.Line, ErrIssuerKeyID)
			}
		}
	}
	var parts [][]byte
	if keyID != nil {
		parts = append(parts, derContextPrimitive(0, keyID))
	}
	if e.akidIssuer == 2 || (e.akidIssuer == 1 && keyID == nil) {
		// GeneralNames { directoryName [4] EXPLICIT Name }
		dirName := derContextExplicit(4, ctx.issuer.RawIssuer)
		parts = append(parts, derContextExplicit(1, dirName))
		parts = append(parts, derContextPrimitive(2, ctx.issuerSerial))
	}
	return derSequence(parts...), nil
}

// extParser parses one extension section entry.
type extParser struct {
	conf    *confFile
	oidSect map[string]bool // names defined by oid_section (unknown to x509 -extfile)
}

func (p *extParser) errorf(e *confEntry, sentinel error, format string, args ...any) error {
	return p.conf.errorf(e.line, e.section, e.key, sentinel, format, args...)
}

func (p *extParser) parse(e *confEntry) (*Extension, error) {
	value := e.value
	ext := &Extension{Name: e.key, Line: e.line}
	// v3_check_critical: exactly "critical," then blanks.
	if strings.HasPrefix(value, "critical,") {
		ext.Critical = true
		value = strings.TrimLeft(value[len("critical,"):], cSpace)
	}
	// v3_check_generic: "DER:" or "ASN1:" makes a generic extension of any OID.
	if rest, ok := strings.CutPrefix(value, "DER:"); ok {
		oid, err := p.genericOID(e)
		if err != nil {
			return nil, err
		}
		b, err := parseHexBytes(strings.TrimLeft(rest, cSpace))
		if err != nil {
			return nil, p.errorf(e, ErrProfileInvalidValue, "DER value: %v", err)
		}
		ext.OID, ext.value = oid, b
		return ext, nil
	}
	if rest, ok := strings.CutPrefix(value, "ASN1:"); ok {
		oid, err := p.genericOID(e)
		if err != nil {
			return nil, err
		}
		b, err := generateASN1(strings.TrimLeft(rest, cSpace))
		if err != nil {
			return nil, p.errorf(e, errSentinel(err), "ASN1 value: %v", err)
		}
		ext.OID, ext.value = oid, b
		return ext, nil
	}
	// Named extensions are looked up by short name only (OBJ_sn2nid).
	var oid asn1.ObjectIdentifier
	for _, n := range extensionNames {
		if n.short == e.key {
			oid = n.oid
		}
	}
	if oid == nil {
		return nil, p.errorf(e, ErrProfileUnknownName, "unknown extension name (a custom extension needs a DER: or ASN1: value)")
	}
	ext.OID = oid
	var err error
	switch {
	case oid.Equal(oidExtBasicConstraints):
		ext.value, err = p.basicConstraints(e, value)
	case oid.Equal(oidExtKeyUsage):
		ext.value, err = p.keyUsage(e, value)
	case oid.Equal(oidExtExtKeyUsage):
		ext.value, err = p.extKeyUsage(e, value)
	case oid.Equal(oidExtSubjectAltName):
		ext.value, err = p.subjectAltName(e, value)
	case oid.Equal(oidExtSubjectKeyID):
		switch value {
		case "hash":
			ext.kind = extSKIDHash
		case "none":
			ext.value = derOctetString(nil) // dropped at issuance, as openssl does
		default:
			b, herr := parseHexBytes(value)
			if herr != nil {
				return nil, p.errorf(e, ErrProfileInvalidValue, "subjectKeyIdentifier must be hash, none or hex bytes: %v", herr)
			}
			ext.value = derOctetString(b)
		}
	case oid.Equal(oidExtAuthorityKeyID):
		err = p.authorityKeyID(e, value, ext)
	default:
		return nil, p.errorf(e, ErrProfileUnsupported, "extension %s is not supported by the harness (supported: basicConstraints, keyUsage, extendedKeyUsage, subjectKeyIdentifier, authorityKeyIdentifier, subjectAltName, OID = DER:/ASN1:)", e.key)
	}
	if err != nil {
		return nil, err
	}
	if ext.Critical && (oid.Equal(oidExtSubjectKeyID) || oid.Equal(oidExtAuthorityKeyID)) {
		// openssl would write it, but RFC 5280 4.2.1.1/4.2.1.2 forbid it and
		// crypto/x509 (and so the harness's own verification) rejects it.
		return nil, p.errorf(e, ErrProfileInvalidValue, "%s must not be critical (RFC 5280 4.2.1.1, 4.2.1.2)", e.key)
	}
	return ext, nil
}

func errSentinel(err error) error {
	if _, ok := err.(unsupportedError); ok {
		return ErrProfileUnsupported
	}
	return ErrProfileInvalidValue
}

type unsupportedError string

func (e unsupportedError) Error() string { return string(e) }

// genericOID resolves the key of a DER:/ASN1: extension (OBJ_txt2obj).
func (p *extParser) genericOID(e *confEntry) (asn1.ObjectIdentifier, error) {
	if oid, ok := parseDottedOID(e.key); ok {
		return oid, nil
	}
	for _, t := range [][]objName{extensionNames, attributeNames, extKeyUsageNames} {
		if oid, ok := lookupName(t, e.key); ok {
			return oid, nil
		}
	}
	if p.oidSect[e.key] {
		return nil, p.errorf(e, ErrProfileUnknownName, "%s is defined by oid_section, which openssl x509 -extfile does not load: write the dotted OID", e.key)
	}
	return nil, p.errorf(e, ErrProfileUnknownName, "unknown object name (write the dotted OID)")
}

// listItem is one "name:value" element of an OpenSSL value list.
type listItem struct {
	name, value string
	hasValue    bool
}

const cSpace = " \t\n\v\f\r" // C isspace()

// stripSpaces is OpenSSL's strip_spaces, quirk included: trailing blanks
// stay when a single character remains after the leading ones go
// ("DNS:b  ,..." keeps "b  ").
func stripSpaces(s string) string {
	s = strings.TrimLeft(s, cSpace)
	if t := strings.TrimRight(s, cSpace); len(t) > 1 {
		return t
	}
	return s
}

// parseList mirrors X509V3_parse_list: comma-separated items, each "name" or
// "name:value" (split at the first colon), blanks stripped, empty names and
// empty values refused.
func parseList(s string) ([]listItem, error) {
	var items []listItem
	for _, raw := range strings.Split(s, ",") {
		name, value, has := strings.Cut(raw, ":")
		name = stripSpaces(name)
		if name == "" {
			return nil, fmt.Errorf("empty name in list %q", s)
		}
		value = stripSpaces(value)
		if has && value == "" {
			return nil, fmt.Errorf("empty value for %q in list %q", name, s)
		}
		items = append(items, listItem{name: name, value: value, hasValue: has})
	}
	return items, nil
}

// items parses a list value, or the entries of "@section" (X509V3_get_section).
func (p *extParser) items(e *confEntry, value string) ([]listItem, error) {
	if sect, ok := strings.CutPrefix(value, "@"); ok {
		entries, found := p.conf.section(sect)
		if !found {
			return nil, p.errorf(e, ErrProfileMissingSection, "section [%s] not found", sect)
		}
		items := make([]listItem, 0, len(entries))
		for _, se := range entries {
			items = append(items, listItem{name: se.key, value: se.value, hasValue: true})
		}
		return items, nil
	}
	items, err := parseList(value)
	if err != nil {
		return nil, p.errorf(e, ErrProfileSyntax, "%v", err)
	}
	return items, nil
}

// parseBool is X509V3_get_value_bool.
func parseBool(s string) (bool, bool) {
	switch s {
	case "TRUE", "true", "Y", "y", "YES", "yes":
		return true, true
	case "FALSE", "false", "N", "n", "NO", "no":
		return false, true
	}
	return false, false
}

// parseInteger is s2i_ASN1_INTEGER: optional '-', then decimal or 0x hex.
func parseInteger(s string) (*big.Int, bool) {
	neg := false
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		neg, s = true, rest
	}
	base := 10
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		base, s = 16, s[2:]
	}
	n, ok := new(big.Int).SetString(s, base)
	if !ok || strings.ContainsAny(s, "+-_") {
		return nil, false
	}
	if neg {
		n.Neg(n)
	}
	return n, true
}

func (p *extParser) basicConstraints(e *confEntry, value string) ([]byte, error) {
	items, err := p.items(e, value)
	if err != nil {
		return nil, err
	}
	ca := false
	var pathLen *big.Int
	for _, it := range items {
		switch it.name {
		case "CA":
			b, ok := parseBool(it.value)
			if !ok {
				return nil, p.errorf(e, ErrProfileInvalidValue, "CA:%s is not a boolean", it.value)
			}
			ca = b
		case "pathlen":
			n, ok := parseInteger(it.value)
			if !ok {
				return nil, p.errorf(e, ErrProfileInvalidValue, "pathlen:%s is not an integer", it.value)
			}
			if n.Sign() < 0 {
				return nil, p.errorf(e, ErrProfileInvalidValue, "pathlen:%s is negative", it.value)
			}
			pathLen = n
		default:
			return nil, p.errorf(e, ErrProfileInvalidValue, "unknown basicConstraints item %q (want CA:TRUE|FALSE, pathlen:N)", it.name)
		}
	}
	var parts [][]byte
	if ca { // DEFAULT FALSE is omitted in DER
		parts = append(parts, derBoolTrue)
	}
	if pathLen != nil {
		parts = append(parts, derBigInt(pathLen))
	}
	return derSequence(parts...), nil
}

func (p *extParser) keyUsage(e *confEntry, value string) ([]byte, error) {
	items, err := p.items(e, value)
	if err != nil {
		return nil, err
	}
	var bits [2]byte
	maxBit := -1
	for _, it := range items {
		bit := -1
		for i, n := range keyUsageBits {
			if it.name == n.short || it.name == n.long {
				bit = i
			}
		}
		if bit < 0 || it.hasValue {
			return nil, p.errorf(e, ErrProfileInvalidValue, "unknown keyUsage %q", it.name)
		}
		bits[bit/8] |= 0x80 >> (bit % 8)
		maxBit = max(maxBit, bit)
	}
	// DER BIT STRING with named bits: no trailing zero bits (X.690 11.2.2).
	n := 1
	if bits[1] != 0 {
		n = 2
	}
	last := bits[n-1]
	unused := 0
	for last != 0 && last&1 == 0 {
		last >>= 1
		unused++
	}
	return derBitString(bits[:n], unused), nil
}

func (p *extParser) objectName(s string) (asn1.ObjectIdentifier, bool) {
	if oid, ok := parseDottedOID(s); ok {
		return oid, true
	}
	for _, t := range [][]objName{extKeyUsageNames, attributeNames, extensionNames} {
		if oid, ok := lookupName(t, s); ok {
			return oid, true
		}
	}
	return nil, false
}

func (p *extParser) extKeyUsage(e *confEntry, value string) ([]byte, error) {
	items, err := p.items(e, value)
	if err != nil {
		return nil, err
	}
	var parts [][]byte
	for _, it := range items {
		name := it.name
		if it.hasValue { // v2i_EXTENDED_KEY_USAGE uses the value when there is one
			name = it.value
		}
		oid, ok := p.objectName(name)
		if !ok {
			if p.oidSect[name] {
				return nil, p.errorf(e, ErrProfileUnknownName, "%s is defined by oid_section, which openssl x509 -extfile does not load: write the dotted OID", name)
			}
			return nil, p.errorf(e, ErrProfileUnknownName, "unknown extended key usage %q", name)
		}
		parts = append(parts, derOID(oid))
	}
	return derSequence(parts...), nil
}

// v3NameIs is ossl_v3_name_cmp: name equals want, or is want followed by '.'
// (so "DNS.1" in an @section counts as DNS).
func v3NameIs(name, want string) bool {
	return name == want || strings.HasPrefix(name, want+".")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (p *extParser) subjectAltName(e *confEntry, value string) ([]byte, error) {
	items, err := p.items(e, value)
	if err != nil {
		return nil, err
	}
	var parts [][]byte
	for _, it := range items {
		if !it.hasValue {
			return nil, p.errorf(e, ErrProfileInvalidValue, "subjectAltName %s has no value (want TYPE:value)", it.name)
		}
		v := it.value
		var tag int
		var content []byte
		switch {
		case v3NameIs(it.name, "email"):
			if v == "copy" || v == "move" {
				return nil, p.errorf(e, ErrProfileUnsupported, "email:%s is not supported", v)
			}
			tag, content = 1, []byte(v)
		case v3NameIs(it.name, "DNS"):
			tag, content = 2, []byte(v)
		case v3NameIs(it.name, "URI"):
			tag, content = 6, []byte(v)
		case v3NameIs(it.name, "IP"):
			ip := net.ParseIP(v)
			if ip == nil {
				return nil, p.errorf(e, ErrProfileInvalidValue, "IP:%s is not an IP address", v)
			}
			if v4 := ip.To4(); v4 != nil && !strings.Contains(v, ":") {
				ip = v4
			}
			tag, content = 7, []byte(ip)
		case v3NameIs(it.name, "RID"):
			oid, ok := p.objectName(v)
			if !ok {
				return nil, p.errorf(e, ErrProfileInvalidValue, "RID:%s is not an object identifier", v)
			}
			c, err := derContent(derOID(oid))
			if err != nil {
				return nil, p.errorf(e, ErrProfileInvalidValue, "RID:%s: %v", v, err)
			}
			tag, content = 8, c
		default:
			return nil, p.errorf(e, ErrProfileUnsupported, "subjectAltName type %q is not supported (supported: DNS, IP, email, URI, RID)", it.name)
		}
		if tag != 7 && tag != 8 && !isASCII(v) {
			return nil, p.errorf(e, ErrProfileUnsupported, "subjectAltName %s:%q is not ASCII", it.name, v)
		}
		parts = append(parts, derContextPrimitive(tag, content))
	}
	return derSequence(parts...), nil
}

func (p *extParser) authorityKeyID(e *confEntry, value string, ext *Extension) error {
	items, err := p.items(e, value)
	if err != nil {
		return err
	}
	ext.kind = extAKID
	if len(items) == 1 && items[0].name == "none" {
		ext.kind = extStatic
		ext.value = derSequence() // dropped at issuance, as openssl does
		return nil
	}
	for _, it := range items {
		level := 1
		if it.value == "always" {
			level = 2
		}
		switch it.name {
		case "keyid":
			ext.akidKeyID = level
		case "issuer":
			ext.akidIssuer = level
		default:
			return p.errorf(e, ErrProfileInvalidValue, "unknown authorityKeyIdentifier option %q (want keyid[:always], issuer[:always] or none)", it.name)
		}
	}
	return nil
}

// parseHexBytes is OPENSSL_hexstr2buf: pairs of hex digits, optionally
// separated by single colons.
func parseHexBytes(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); {
		if s[i] == ':' {
			i++
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("odd number of hex digits in %q", s)
		}
		b, err := hex.DecodeString(s[i : i+2])
		if err != nil {
			return nil, fmt.Errorf("not hex: %q", s)
		}
		out = append(out, b[0])
		i += 2
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no bytes in %q", s)
	}
	return out, nil
}

// isPrintableStringChar is the ASN.1 PrintableString alphabet (X.680 41.4).
func isPrintableStringChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" '()+,-./:=?", c) >= 0
}

// generateASN1 implements the simple forms of ASN1_generate_nconf
// ("TYPE:value", type names case-insensitive); modifiers and constructed
// types are refused.
func generateASN1(s string) ([]byte, error) {
	typ, value, hasValue := strings.Cut(s, ":")
	typ = strings.TrimSpace(typ)
	str := func(tag int, check func(string) error) ([]byte, error) {
		if err := check(value); err != nil {
			return nil, err
		}
		return derWrap(asn1.ClassUniversal, tag, false, []byte(value)), nil
	}
	ascii := func(v string) error {
		if !isASCII(v) {
			return unsupportedError(fmt.Sprintf("non-ASCII text in %s value (openssl would re-encode it)", typ))
		}
		return nil
	}
	switch strings.ToUpper(typ) {
	case "UTF8", "UTF8STRING":
		return str(asn1.TagUTF8String, ascii)
	case "IA5", "IA5STRING":
		return str(asn1.TagIA5String, ascii)
	case "PRINTABLE", "PRINTABLESTRING":
		return str(asn1.TagPrintableString, func(v string) error {
			for i := 0; i < len(v); i++ {
				if !isPrintableStringChar(v[i]) {
					return fmt.Errorf("%q is not allowed in a PrintableString", v[i])
				}
			}
			return nil
		})
	case "OCT", "OCTETSTRING":
		return derOctetString([]byte(value)), nil
	case "BOOL", "BOOLEAN":
		b, ok := parseBool(value)
		if !ok {
			return nil, fmt.Errorf("%q is not a boolean", value)
		}
		return mustMarshal(b), nil
	case "INT", "INTEGER":
		n, ok := parseInteger(value)
		if !ok {
			return nil, fmt.Errorf("%q is not an integer", value)
		}
		return derBigInt(n), nil
	case "NULL":
		if value != "" {
			return nil, fmt.Errorf("NULL takes no value, got %q", value)
		}
		return []byte{0x05, 0x00}, nil
	case "OID", "OBJECT":
		p := &extParser{}
		oid, ok := p.objectName(value)
		if !ok {
			return nil, fmt.Errorf("%q is not a known object name or dotted OID", value)
		}
		return derOID(oid), nil
	}
	if !hasValue && typ == "" {
		return nil, fmt.Errorf("empty ASN1 value")
	}
	return nil, unsupportedError(fmt.Sprintf("ASN1 type or modifier %q is not supported (supported: UTF8String, IA5STRING, PRINTABLESTRING, OCTETSTRING, BOOLEAN, INTEGER, NULL, OID)", typ))
}

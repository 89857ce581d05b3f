package pki

import (
	"encoding/asn1"
	"strconv"
	"strings"
)

// objName is one entry of OpenSSL's object table as far as this package needs
// it: the short and long names OpenSSL accepts for an OID. The names are the
// ones `openssl asn1parse -genstr OID:<name>` knows (checked by a test).
type objName struct {
	short, long string
	oid         asn1.ObjectIdentifier
}

// attributeNames are the distinguished-name attribute types OpenSSL 3.0 knows
// by name ([dn] keys).
var attributeNames = []objName{
	{"CN", "commonName", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"SN", "surname", asn1.ObjectIdentifier{2, 5, 4, 4}},
	{"serialNumber", "serialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"C", "countryName", asn1.ObjectIdentifier{2, 5, 4, 6}},
	{"L", "localityName", asn1.ObjectIdentifier{2, 5, 4, 7}},
	{"ST", "stateOrProvinceName", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"street", "streetAddress", asn1.ObjectIdentifier{2, 5, 4, 9}},
	{"O", "organizationName", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"OU", "organizationalUnitName", asn1.ObjectIdentifier{2, 5, 4, 11}},
	{"title", "title", asn1.ObjectIdentifier{2, 5, 4, 12}},
	{"description", "description", asn1.ObjectIdentifier{2, 5, 4, 13}},
	{"businessCategory", "businessCategory", asn1.ObjectIdentifier{2, 5, 4, 15}},
	{"postalAddress", "postalAddress", asn1.ObjectIdentifier{2, 5, 4, 16}},
	{"postalCode", "postalCode", asn1.ObjectIdentifier{2, 5, 4, 17}},
	{"name", "name", asn1.ObjectIdentifier{2, 5, 4, 41}},
	{"GN", "givenName", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"initials", "initials", asn1.ObjectIdentifier{2, 5, 4, 43}},
	{"generationQualifier", "generationQualifier", asn1.ObjectIdentifier{2, 5, 4, 44}},
	{"x500UniqueIdentifier", "x500UniqueIdentifier", asn1.ObjectIdentifier{2, 5, 4, 45}},
	{"dnQualifier", "dnQualifier", asn1.ObjectIdentifier{2, 5, 4, 46}},
	{"pseudonym", "pseudonym", asn1.ObjectIdentifier{2, 5, 4, 65}},
	{"role", "role", asn1.ObjectIdentifier{2, 5, 4, 72}},
	{"organizationIdentifier", "organizationIdentifier", asn1.ObjectIdentifier{2, 5, 4, 97}},
	{"emailAddress", "emailAddress", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
	{"unstructuredName", "unstructuredName", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 2}},
	{"DC", "domainComponent", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}},
	{"UID", "userId", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}},
	{"jurisdictionL", "jurisdictionLocalityName", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 1}},
	{"jurisdictionST", "jurisdictionStateOrProvinceName", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 2}},
	{"jurisdictionC", "jurisdictionCountryName", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3}},
}

// Extension OIDs (RFC 5280 section 4.2).
var (
	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// extensionNames are the extension short names OpenSSL's x509v3 config knows.
// Only some have a value syntax this package implements (see extensions.go);
// the others are listed so that a profile using them fails loudly instead of
// being mistaken for an unknown name.
var extensionNames = []objName{
	{"subjectKeyIdentifier", "X509v3 Subject Key Identifier", oidExtSubjectKeyID},
	{"keyUsage", "X509v3 Key Usage", oidExtKeyUsage},
	{"subjectAltName", "X509v3 Subject Alternative Name", oidExtSubjectAltName},
	{"basicConstraints", "X509v3 Basic Constraints", oidExtBasicConstraints},
	{"authorityKeyIdentifier", "X509v3 Authority Key Identifier", oidExtAuthorityKeyID},
	{"extendedKeyUsage", "X509v3 Extended Key Usage", oidExtExtKeyUsage},
	{"issuerAltName", "X509v3 Issuer Alternative Name", asn1.ObjectIdentifier{2, 5, 29, 18}},
	{"subjectDirectoryAttributes", "X509v3 Subject Directory Attributes", asn1.ObjectIdentifier{2, 5, 29, 9}},
	{"privateKeyUsagePeriod", "X509v3 Private Key Usage Period", asn1.ObjectIdentifier{2, 5, 29, 16}},
	{"nameConstraints", "X509v3 Name Constraints", asn1.ObjectIdentifier{2, 5, 29, 30}},
	{"crlDistributionPoints", "X509v3 CRL Distribution Points", asn1.ObjectIdentifier{2, 5, 29, 31}},
	{"certificatePolicies", "X509v3 Certificate Policies", asn1.ObjectIdentifier{2, 5, 29, 32}},
	{"policyMappings", "X509v3 Policy Mappings", asn1.ObjectIdentifier{2, 5, 29, 33}},
	{"policyConstraints", "X509v3 Policy Constraints", asn1.ObjectIdentifier{2, 5, 29, 36}},
	{"freshestCRL", "X509v3 Freshest CRL", asn1.ObjectIdentifier{2, 5, 29, 46}},
	{"inhibitAnyPolicy", "X509v3 Inhibit Any Policy", asn1.ObjectIdentifier{2, 5, 29, 54}},
	{"authorityInfoAccess", "Authority Information Access", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}},
	{"subjectInfoAccess", "Subject Information Access", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 11}},
	{"proxyCertInfo", "Proxy Certificate Information", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 14}},
	{"tlsfeature", "TLS Feature", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}},
	{"noCheck", "OCSP No Check", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}},
	{"nsCertType", "Netscape Cert Type", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}},
	{"nsBaseUrl", "Netscape Base Url", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 2}},
	{"nsRevocationUrl", "Netscape Revocation Url", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 3}},
	{"nsCaRevocationUrl", "Netscape CA Revocation Url", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 4}},
	{"nsRenewalUrl", "Netscape Renewal Url", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 7}},
	{"nsCaPolicyUrl", "Netscape CA Policy Url", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 8}},
	{"nsSslServerName", "Netscape SSL Server Name", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 12}},
	{"nsComment", "Netscape Comment", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 13}},
}

// extKeyUsageNames are the purposes extendedKeyUsage accepts by name.
var extKeyUsageNames = []objName{
	{"serverAuth", "TLS Web Server Authentication", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}},
	{"clientAuth", "TLS Web Client Authentication", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}},
	{"codeSigning", "Code Signing", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}},
	{"emailProtection", "E-mail Protection", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}},
	{"ipsecEndSystem", "IPSec End System", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 5}},
	{"ipsecTunnel", "IPSec Tunnel", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 6}},
	{"ipsecUser", "IPSec User", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 7}},
	{"timeStamping", "Time Stamping", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}},
	{"OCSPSigning", "OCSP Signing", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}},
	{"ipsecIKE", "ipsec Internet Key Exchange", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}},
	{"secureShellClient", "SSH Client", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 21}},
	{"secureShellServer", "SSH Server", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 22}},
	{"msCodeInd", "Microsoft Individual Code Signing", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 21}},
	{"msCodeCom", "Microsoft Commercial Code Signing", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 22}},
	{"msCTLSign", "Microsoft Trust List Signing", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 10, 3, 1}},
	{"msSGC", "Microsoft Server Gated Crypto", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 10, 3, 3}},
	{"msEFS", "Microsoft Encrypted File System", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 10, 3, 4}},
	{"nsSGC", "Netscape Server Gated Crypto", asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 4, 1}},
	{"anyExtendedKeyUsage", "Any Extended Key Usage", asn1.ObjectIdentifier{2, 5, 29, 37, 0}},
}

// keyUsageBits are the keyUsage names (short, then OpenSSL's long form) in
// bit order (RFC 5280 section 4.2.1.3).
var keyUsageBits = []struct{ short, long string }{
	{"digitalSignature", "Digital Signature"},
	{"nonRepudiation", "Non Repudiation"},
	{"keyEncipherment", "Key Encipherment"},
	{"dataEncipherment", "Data Encipherment"},
	{"keyAgreement", "Key Agreement"},
	{"keyCertSign", "Certificate Sign"},
	{"cRLSign", "CRL Sign"},
	{"encipherOnly", "Encipher Only"},
	{"decipherOnly", "Decipher Only"},
}

// Algorithm OIDs.
var (
	oidPublicKeyEC       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidPublicKeyRSA      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidCurveP256         = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidSignatureECDSA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

// curveNames names curves in errors.
var curveNames = map[string]string{
	"1.2.840.10045.3.1.7":  "P-256 (prime256v1)",
	"1.3.132.0.34":         "P-384 (secp384r1)",
	"1.3.132.0.35":         "P-521 (secp521r1)",
	"1.3.132.0.10":         "secp256k1",
	"1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
}

// algorithmNames names public-key and signature algorithms in errors.
var algorithmNames = map[string]string{
	"1.2.840.10045.2.1":     "EC",
	"1.2.840.113549.1.1.1":  "RSA",
	"1.2.840.10040.4.1":     "DSA",
	"1.3.101.112":           "Ed25519",
	"1.3.101.113":           "Ed448",
	"1.2.840.10045.4.1":     "ecdsa-with-SHA1",
	"1.2.840.10045.4.3.1":   "ecdsa-with-SHA224",
	"1.2.840.10045.4.3.2":   "ecdsa-with-SHA256",
	"1.2.840.10045.4.3.3":   "ecdsa-with-SHA384",
	"1.2.840.10045.4.3.4":   "ecdsa-with-SHA512",
	"1.2.840.113549.1.1.5":  "sha1WithRSAEncryption",
	"1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
	"1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
	"1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
	"1.2.840.113549.1.1.10": "RSASSA-PSS",
}

func describeOID(m map[string]string, oid asn1.ObjectIdentifier) string {
	s := oid.String()
	if n, ok := m[s]; ok {
		return n + " (" + s + ")"
	}
	return s
}

// lookupName finds name among the short and long names of table.
func lookupName(table []objName, name string) (asn1.ObjectIdentifier, bool) {
	for _, o := range table {
		if o.short == name || o.long == name {
			return o.oid, true
		}
	}
	return nil, false
}

// parseDottedOID parses "1.2.3" strictly: at least two arcs, first arc 0..2,
// second arc below 40 under arcs 0 and 1 (X.690 8.19.4), decimal digits only.
func parseDottedOID(s string) (asn1.ObjectIdentifier, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, false
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return nil, false
		}
		if len(p) > 1 && p[0] == '0' {
			return nil, false
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] >= 40) {
		return nil, false
	}
	return oid, true
}

// nameForOID returns the first short name any table gives oid, or the dotted form.
func nameForOID(oid asn1.ObjectIdentifier) string {
	for _, t := range [][]objName{attributeNames, extensionNames, extKeyUsageNames} {
		for _, o := range t {
			if o.oid.Equal(oid) {
				return o.short
			}
		}
	}
	return oid.String()
}

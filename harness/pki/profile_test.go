package pki

import (
	"encoding/asn1"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

func TestLoadFixtureProfile(t *testing.T) {
	p := loadFixtureProfile(t)
	if p.DeviceTypeID != "A2EXAMPLE0TYPE" || !p.DeviceTypeOID.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 4843, 1, 3}) {
		t.Errorf("device type %q %v", p.DeviceTypeID, p.DeviceTypeOID)
	}
	want := []struct{ name, oid, value string }{
		{"CN", "2.5.4.3", "Example FFS Device"},
		{"Reserved1", "1.3.6.1.4.1.4843.1.1", "0"},
		{"Reserved2", "1.3.6.1.4.1.4843.1.2", "0"},
		{"DeviceTypeId", "1.3.6.1.4.1.4843.1.3", "A2EXAMPLE0TYPE"},
	}
	if len(p.Subject) != len(want) {
		t.Fatalf("subject %+v", p.Subject)
	}
	for i, w := range want {
		f := p.Subject[i]
		if f.Name != w.name || f.OID.String() != w.oid || f.Value != w.value || f.PerDevice || f.Line == 0 {
			t.Errorf("field %d = %+v, want %v", i, f, w)
		}
	}
	var names []string
	for _, e := range p.Extensions {
		names = append(names, e.Name)
		if crit := e.Name == "basicConstraints" || e.Name == "keyUsage"; e.Critical != crit {
			t.Errorf("%s critical=%v", e.Name, e.Critical)
		}
	}
	if got := strings.Join(names, ","); got != "basicConstraints,keyUsage,extendedKeyUsage,subjectKeyIdentifier" {
		t.Errorf("extensions %s", got)
	}
	if p.ExtensionsSection != "req_ext" || p.Path != fixtureProfile {
		t.Errorf("section %q path %q", p.ExtensionsSection, p.Path)
	}
	other, err := LoadProfile(fixtureProfile, ProfileOptions{ExtensionsSection: "v3_req"})
	if err != nil || len(other.Extensions) != 2 || other.Extensions[0].Critical {
		t.Errorf("v3_req section: %v %+v", err, other)
	}
}

func TestLoadProfileMissingFile(t *testing.T) {
	_, err := LoadProfile("/nonexistent/device.conf", ProfileOptions{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "reading profile /nonexistent/device.conf") {
		t.Errorf("got %v", err)
	}
}

const baseProfile = `oid_section = OIDs
[ req ]
prompt = no
distinguished_name = dn
[ OIDs ]
DeviceTypeId = 1.3.6.1.4.1.4843.1.3
[ dn ]
CN = x
DeviceTypeId = T
[ req_ext ]
basicConstraints = critical, CA:FALSE
`

// TestProfileErrors: every refusal names the file, and the line, section and
// key when there is one, and matches a sentinel.
func TestProfileErrors(t *testing.T) {
	cases := []struct {
		name    string
		text    string
		opts    ProfileOptions
		want    error
		line    int
		message string
	}{
		{"unknown attribute", strings.Replace(baseProfile, "CN = x", "CN = x\nFrobnicator = 1", 1), ProfileOptions{},
			ErrProfileUnknownName, 9, `prof.conf:9: [dn] Frobnicator: unknown attribute name "Frobnicator"`},
		{"dotted OID as dn key", strings.Replace(baseProfile, "CN = x", "1.2.3.4 = x", 1), ProfileOptions{},
			ErrProfileUnknownName, 8, `"2.3.4"`},
		{"missing dn", strings.Replace(baseProfile, "[ dn ]", "[ other ]", 1), ProfileOptions{},
			ErrProfileMissingSection, 0, "distinguished name section [dn] not found"},
		{"missing extension section", baseProfile, ProfileOptions{ExtensionsSection: "dha_ext"},
			ErrProfileMissingSection, 0, "extensions section [dha_ext] not found"},
		{"unsupported extension", baseProfile + "crlDistributionPoints = URI:http://x/crl\n", ProfileOptions{},
			ErrProfileUnsupported, 12, "[req_ext] crlDistributionPoints: extension crlDistributionPoints is not supported"},
		{"unknown extension", baseProfile + "frobnicate = yes\n", ProfileOptions{},
			ErrProfileUnknownName, 12, "unknown extension name"},
		{"bad extension value", baseProfile + "keyUsage = digitalSignature, flying\n", ProfileOptions{},
			ErrProfileInvalidValue, 12, `unknown keyUsage "flying"`},
		{"duplicate extension", baseProfile + "2.5.29.19 = DER:3000\n", ProfileOptions{},
			ErrProfileUnsupported, 12, "already given by basicConstraints on line 11"},
		{"prompting profile", strings.Replace(baseProfile, "prompt = no", "prompt = yes", 1), ProfileOptions{},
			ErrProfileUnsupported, 3, "only prompt = no"},
		{"prompt missing", strings.Replace(baseProfile, "prompt = no\n", "", 1), ProfileOptions{},
			ErrProfileUnsupported, 2, "only prompt = no"},
		{"no device type", strings.Replace(baseProfile, "DeviceTypeId = T\n", "", 1), ProfileOptions{},
			ErrProfileInvalidValue, 7, "no DeviceTypeId (1.3.6.1.4.1.4843.1.3) attribute"},
		{"device type field unknown", baseProfile, ProfileOptions{DeviceTypeField: "ProductId"},
			ErrProfileUnknownName, 0, "ProductId: device type field is not an attribute name"},
		{"device type per-device", baseProfile, ProfileOptions{PerDeviceFields: []string{"DeviceTypeId"}},
			ErrProfileInvalidValue, 0, "cannot be a per-device field"},
		{"per-device unknown", baseProfile, ProfileOptions{PerDeviceFields: []string{"Serial"}},
			ErrProfileUnknownName, 0, "Serial: per-device field"},
		{"empty dn value", strings.Replace(baseProfile, "CN = x", "CN =", 1), ProfileOptions{},
			ErrProfileInvalidValue, 8, "CN: empty value"},
		{"oid section missing", strings.Replace(baseProfile, "[ OIDs ]", "[ oids ]", 1), ProfileOptions{},
			ErrProfileMissingSection, 1, "section [OIDs] not found"},
		{"oid long-name form", strings.Replace(baseProfile, "= 1.3.6.1.4.1.4843.1.3", "= Device Type, 1.3.6.1.4.1.4843.1.3", 1), ProfileOptions{},
			ErrProfileInvalidValue, 6, "is not a dotted OID"},
		{"oid redefines CN", strings.Replace(baseProfile, "[ OIDs ]", "[ OIDs ]\nCN = 1.2.3.4", 1), ProfileOptions{},
			ErrProfileInvalidValue, 6, "already defined"},
		{"oid_file", "oid_file = x\n" + baseProfile, ProfileOptions{},
			ErrProfileUnsupported, 1, "oid_file"},
		{"missing equal sign", baseProfile + "keyUsage digitalSignature\n", ProfileOptions{},
			ErrProfileSyntax, 12, "missing equal sign"},
		{"unclosed section", baseProfile + "[ tail\n", ProfileOptions{},
			ErrProfileSyntax, 12, "missing close square bracket"},
		{"undefined variable", strings.Replace(baseProfile, "CN = x", "CN = $undefined", 1), ProfileOptions{},
			ErrProfileSyntax, 8, "variable $undefined has no value"},
		{"environment variable", strings.Replace(baseProfile, "CN = x", "CN = ${ENV::HOME}", 1), ProfileOptions{},
			ErrProfileUnsupported, 8, "environment"},
		{"include", ".include other.conf\n" + baseProfile, ProfileOptions{},
			ErrProfileUnsupported, 1, ".include"},
		{"oid_section name in EKU", baseProfile + "extendedKeyUsage = DeviceTypeId\n", ProfileOptions{},
			ErrProfileUnknownName, 12, "oid_section, which openssl x509 -extfile does not load"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParseProfile("prof.conf", []byte(c.text), c.opts)
			if p != nil || !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
			var pe *ProfileError
			if !errors.As(err, &pe) || pe.Path != "prof.conf" || pe.Line != c.line {
				t.Errorf("want *ProfileError at line %d, got %#v", c.line, err)
			}
			if !strings.Contains(err.Error(), c.message) || !strings.HasPrefix(err.Error(), "profile prof.conf") {
				t.Errorf("message %q does not contain %q", err, c.message)
			}
		})
	}
}

// TestProfileConfSyntaxMatchesOpenSSL: the [dn] values the harness reads
// from tricky config text are exactly what openssl req puts in the CSR.
func TestProfileConfSyntaxMatchesOpenSSL(t *testing.T) {
	conf := `# leading comment
oid_section = OIDs
base = Base Val
[ req ]
prompt = no
default_md = sha256
distinguished_name = dn_other
[ OIDs ]
DeviceTypeId = 1.3.6.1.4.1.4843.1.3
[dn_other]
CN = "quoted # not a comment" # a comment
street = first
O = 'single \' quote'
0.OU = a\tb\x   
1.OU = ${base}-$base-$(base)-${req::prompt}-$req::prompt-\$5
L = dq ""inner"" end
ST = trail\
continued
street = replaced at a later position
+title = multi-valued
commonName = second common name
DeviceTypeId = A2EXAMPLE0TYPE
[ req_ext ]
subjectKeyIdentifier = hash
`
	dir := t.TempDir()
	path := writeFile(t, dir, "tricky.conf", []byte(conf))
	p, err := LoadProfile(path, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := makeCSR(t, dir, path, "prime256v1")
	csr, err := p.CheckCSR(csrPEM)
	if err != nil {
		t.Fatalf("the profile refuses the CSR openssl made from it: %v", err)
	}
	if len(csr.Subject.Names) != len(p.Subject) {
		t.Fatalf("openssl wrote %d attributes, the profile has %d", len(csr.Subject.Names), len(p.Subject))
	}
	// Same attributes, value for value. (Order aside: openssl sorts the
	// members of the multi-valued RDN that "+title" makes.)
	key := func(oid asn1.ObjectIdentifier, v any) string { return oid.String() + "=" + v.(string) }
	var fromOpenSSL, fromProfile []string
	for _, atv := range csr.Subject.Names {
		fromOpenSSL = append(fromOpenSSL, key(atv.Type, atv.Value))
	}
	for _, f := range p.Subject {
		fromProfile = append(fromProfile, key(f.OID, f.Value))
	}
	slices.Sort(fromOpenSSL)
	slices.Sort(fromProfile)
	if !slices.Equal(fromOpenSSL, fromProfile) {
		t.Errorf("openssl wrote\n%q\nthe profile reads\n%q", fromOpenSSL, fromProfile)
	}
	// A repeated key moves to its later position, in openssl and here.
	pos := func(names []string, prefix string) int {
		return slices.IndexFunc(names, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
	var openOrder, profOrder []string
	for _, atv := range csr.Subject.Names {
		openOrder = append(openOrder, key(atv.Type, atv.Value))
	}
	for _, f := range p.Subject {
		profOrder = append(profOrder, key(f.OID, f.Value))
	}
	for _, order := range [][]string{openOrder, profOrder} {
		if pos(order, "2.5.4.9=") < pos(order, "2.5.4.8=") {
			t.Errorf("street should come after ST: %q", order)
		}
	}
	want := map[string]string{
		"CN": "quoted # not a comment", "O": "single ' quote", "L": "dq inner end", "ST": "trailcontinued",
		"street": "replaced at a later position", "title": "multi-valued", "DeviceTypeId": "A2EXAMPLE0TYPE",
	}
	for _, f := range p.Subject {
		if w, ok := want[f.Name]; ok && f.Value != w {
			t.Errorf("%s = %q, want %q", f.Name, f.Value, w)
		}
	}
	if p.Subject[2].Value != "a\tbx" || p.Subject[3].Value != "Base Val-Base Val-Base Val-no-no-$5" {
		t.Errorf("OU values %q %q", p.Subject[2].Value, p.Subject[3].Value)
	}
}

package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bombConf is a device.conf whose $variables nest levels deep, each level
// naming the one below ten times: 16 bytes become 16·10^levels. It is about
// 1 KB of text; uncapped, 7 levels took 2.1 GB and 8 ran past a minute.
func bombConf(t testing.TB, levels int) []byte {
	t.Helper()
	data, err := os.ReadFile(fixtureProfile)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("bomb0 = 0123456789abcdef\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "bomb%d =%s\n", i, strings.Repeat(fmt.Sprintf(" $bomb%d", i-1), 10))
	}
	// The bomb goes off in a [dn] value, as a hostile profile would place it.
	s := strings.Replace(string(data), "CN = Example FFS Device", fmt.Sprintf("CN = $bomb%d", levels), 1)
	return []byte(b.String() + s)
}

// TestConfExpansionBombRefused: a nested-variable bomb is refused at once,
// naming the file, the line and the variable, and openssl refuses the same
// file ("variable expansion too long").
func TestConfExpansionBombRefused(t *testing.T) {
	dir := t.TempDir()
	for _, levels := range []int{5, 8, 12} {
		path := writeFile(t, dir, fmt.Sprintf("bomb%d.conf", levels), bombConf(t, levels))
		start := time.Now()
		_, err := LoadProfile(path, ProfileOptions{})
		took := time.Since(start)
		var pe *ProfileError
		if !errors.As(err, &pe) || !errors.Is(err, ErrProfileInvalidValue) {
			t.Fatalf("%d levels: want a ProfileError (invalid value), got %v", levels, err)
		}
		// Level 4 would be 160 KB: its line, 5, is the first past 64 KiB.
		msg := err.Error()
		for _, want := range []string{path + ":5:", "bomb4:", "$bomb3", "variable expansion too long", "65536"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%d levels: error %q does not contain %q", levels, msg, want)
			}
		}
		t.Logf("%d levels: refused in %v: %v", levels, took, err)

		// The independent judge.
		_, oerr := opensslErr(dir, nil, "req", "-new", "-config", path, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
			"-nodes", "-keyout", filepath.Join(dir, "k.pem"), "-out", filepath.Join(dir, "x.csr"))
		if oerr == nil || !strings.Contains(oerr.Error(), "variable expansion too long") || !strings.Contains(oerr.Error(), "line 5") {
			t.Errorf("%d levels: openssl should refuse the bomb at line 5 with \"variable expansion too long\", got %v", levels, oerr)
		}
	}
}

// TestConfExpansionLimitMatchesOpenSSL: the limit is openssl's to the byte.
// "b = $a" with a 65,535-byte $a is accepted by both, 65,536 bytes refused by
// both (str_copy counts the raw value, its NUL, and each variable's value
// in place of its reference).
func TestConfExpansionLimitMatchesOpenSSL(t *testing.T) {
	dir := t.TempDir()
	fixture := readFileT(t, fixtureProfile)
	cases := []struct {
		name string
		text string // prepended to the fixture, in the default section
		ok   bool
	}{
		{"65535 through $a", "a = " + strings.Repeat("x", 65535) + "\nb = $a\n", true},
		{"65536 through $a", "a = " + strings.Repeat("x", 65536) + "\nb = $a\n", false},
		{"65534 through ${a}", "a = " + strings.Repeat("x", 65534) + "\nb = ${a}\n", true},
		{"two halves and a literal", "a = " + strings.Repeat("x", 32766) + "\nb = $a$a\"z\"\n", true},
		{"two halves and two literals", "a = " + strings.Repeat("x", 32766) + "\nb = $a$a\"zz\"\n", false},
		{"a long value with no variable", "a = " + strings.Repeat("x", 100000) + "\n", true},
	}
	for i, c := range cases {
		path := writeFile(t, dir, fmt.Sprintf("limit%d.conf", i), append([]byte(c.text), fixture...))
		_, err := LoadProfile(path, ProfileOptions{})
		_, oerr := opensslErr(dir, nil, "req", "-new", "-config", path, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
			"-nodes", "-keyout", filepath.Join(dir, "k.pem"), "-out", filepath.Join(dir, "x.csr"))
		if (err == nil) != c.ok {
			t.Errorf("%s: hilbench accepted=%v, want %v (%v)", c.name, err == nil, c.ok, err)
		}
		if (oerr == nil) != c.ok {
			t.Errorf("%s: openssl accepted=%v, want %v (%v)", c.name, oerr == nil, c.ok, oerr)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%s:2:", path))) {
			t.Errorf("%s: error should name %s:2: %v", c.name, path, err)
		}
	}
}

// TestConfNestedVariablesMatchOpenSSL: a legitimate profile whose [dn]
// values nest variables several levels deep (across sections) reads exactly
// what openssl req puts in the CSR.
func TestConfNestedVariablesMatchOpenSSL(t *testing.T) {
	conf := `oid_section = OIDs
[ line ]
x = plant7
[ default ]
vendor = Acme
line = L$(vendor)
product = ${line}-$line::x
model = ${product}/$vendor
[ req ]
prompt = no
default_md = sha256
distinguished_name = dn
[ OIDs ]
DeviceTypeId = 1.3.6.1.4.1.4843.1.3
[ dn ]
CN = $model:$model
O = "$vendor" is $vendor
OU = ${line::x}.$product
DeviceTypeId = A2EXAMPLE0TYPE
[ req_ext ]
subjectKeyIdentifier = hash
`
	dir := t.TempDir()
	path := writeFile(t, dir, "nested.conf", []byte(conf))
	p, err := LoadProfile(path, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := p.CheckCSR(makeCSR(t, dir, path, "prime256v1"))
	if err != nil {
		t.Fatalf("the profile refuses the CSR openssl made from it: %v", err)
	}
	var fromOpenSSL, fromProfile []string
	for _, atv := range csr.Subject.Names {
		fromOpenSSL = append(fromOpenSSL, fmt.Sprintf("%v=%v", atv.Type, atv.Value))
	}
	for _, f := range p.Subject {
		fromProfile = append(fromProfile, fmt.Sprintf("%v=%v", f.OID, f.Value))
	}
	if strings.Join(fromOpenSSL, "\n") != strings.Join(fromProfile, "\n") {
		t.Errorf("openssl wrote\n%q\nthe profile reads\n%q", fromOpenSSL, fromProfile)
	}
	want := map[string]string{"CN": "LAcme-plant7/Acme:LAcme-plant7/Acme", "O": "$vendor is Acme", "OU": "plant7.LAcme-plant7"}
	for _, f := range p.Subject {
		if w, ok := want[f.Name]; ok && f.Value != w {
			t.Errorf("%s = %q, want %q", f.Name, f.Value, w)
		}
	}
}

// BenchmarkConfExpansionBomb: how long refusing a 12-level bomb takes.
func BenchmarkConfExpansionBomb(b *testing.B) {
	data := bombConf(b, 12)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseProfile("bomb.conf", data, ProfileOptions{}); err == nil {
			b.Fatal("bomb accepted")
		}
	}
}

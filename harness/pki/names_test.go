package pki

import (
	"encoding/asn1"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestNameTablesMatchOpenSSL asks openssl for the OID of every short and long
// name in the tables, in one asn1parse -genconf run.
func TestNameTablesMatchOpenSSL(t *testing.T) {
	var names []string
	var want []asn1.ObjectIdentifier
	for _, table := range [][]objName{attributeNames, extensionNames, extKeyUsageNames} {
		for _, o := range table {
			names = append(names, o.short, o.long)
			want = append(want, o.oid, o.oid)
		}
	}
	var conf strings.Builder
	conf.WriteString("asn1 = SEQUENCE:names\n[ names ]\n")
	for i, n := range names {
		fmt.Fprintf(&conf, "n%d = OID:%s\n", i, n)
	}
	dir := t.TempDir()
	confPath := writeFile(t, dir, "names.cnf", []byte(conf.String()))
	out := filepath.Join(dir, "names.der")
	openssl(t, dir, "asn1parse", "-genconf", confPath, "-noout", "-out", out)
	var got []asn1.ObjectIdentifier
	der := readFileT(t, out)
	if rest, err := asn1.Unmarshal(der, &got); err != nil || len(rest) != 0 {
		t.Fatalf("parsing openssl output: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("openssl gave %d OIDs for %d names", len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("%q: table says %v, openssl says %v", names[i], want[i], got[i])
		}
	}
}

func TestParseDottedOID(t *testing.T) {
	for s, ok := range map[string]bool{
		"1.2.3": true, "2.999.1": true, "0.39": true, "1.3.6.1.4.1.4843.1.3": true,
		"1": false, "3.1": false, "1.40": false, "1..2": false, "1.2.": false, "01.2": false, "1.-2": false, "1.2a": false, "": false,
	} {
		if _, got := parseDottedOID(s); got != ok {
			t.Errorf("%q: got %v", s, got)
		}
	}
}

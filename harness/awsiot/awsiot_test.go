package awsiot_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hilbench/harness/awsiot"
	"hilbench/harness/pki"
	"hilbench/harness/signer/softdak"
)

const (
	profilePath    = "../../fixtures/profiles/aws-iot.conf"
	lineSchema     = "../../docs/schemas/aws-iot-bulk-line.schema.json"
	templateSchema = "../../docs/schemas/aws-iot-provisioning-template.schema.json"
	cm             = "Example Contract Manufacturing Co"
)

// line is a contract manufacturer's line: its CA (made as a development DAK whose subject O is
// the manufacturer) issuing through pki.Issuer with the AWS IoT profile.
type line struct {
	dir    string
	ca     *x509.Certificate
	issuer *pki.Issuer
}

func newLine(t *testing.T, manufacturer string) *line {
	t.Helper()
	dir := t.TempDir()
	res, err := softdak.InitDevelopment(filepath.Join(dir, "ca"), softdak.InitOptions{
		CommonName: manufacturer + " device CA", Organization: manufacturer})
	if err != nil {
		t.Fatal(err)
	}
	s, err := softdak.Open(res.Key, res.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	profile, err := pki.LoadProfile(profilePath, pki.ProfileOptions{DeviceTypeField: "OU", PerDeviceFields: []string{"CN", "serialNumber"}})
	if err != nil {
		t.Fatal(err)
	}
	return &line{dir: dir, ca: res.DAK, issuer: &pki.Issuer{Profile: profile, Signer: s, CA: res.DAK}}
}

// device makes a device key and has the line issue its chain for a CSR naming the thing.
func (l *line) device(t *testing.T, thing, serial string) (*pki.Issued, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{
		CommonName: thing, SerialNumber: serial, Organization: []string{"Example Devices Ltd"}, OrganizationalUnit: []string{"EXAMPLE-SENSOR-1"},
	}}, key)
	if err != nil {
		t.Fatal(err)
	}
	is, err := l.issuer.Issue(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		t.Fatalf("issuing for %s: %v", thing, err)
	}
	return is, key
}

func loadConfig(t *testing.T) *awsiot.Config {
	t.Helper()
	c, err := awsiot.LoadConfig(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigFromTheExampleProfile(t *testing.T) {
	t.Parallel()
	c := loadConfig(t)
	if c.ContractManufacturer != cm || c.PolicyName != "ExampleSensorPolicy" || c.ThingType != "example-sensor-1" {
		t.Errorf("config %+v", c)
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, text, want string
	}{
		{"no section", "[ dn ]\nCN = x\n", "no [aws_iot] section"},
		{"unknown key", "[aws_iot]\ncontract_manufacturer = A\npolicy_name = P\npolicy = Q\n", "p.conf:4: [aws_iot]: unknown key \"policy\""},
		{"missing policy", "[aws_iot]\ncontract_manufacturer = A\n", "policy_name is required"},
		{"bad policy", "[aws_iot]\ncontract_manufacturer = A\npolicy_name = my policy\n", "p.conf:3: [aws_iot]: policy_name \"my policy\""},
		{"twice", "[aws_iot]\ncontract_manufacturer = A\ncontract_manufacturer = B\npolicy_name = P\n", "p.conf:3: [aws_iot]: contract_manufacturer given twice (also line 2)"},
		{"variable", "[aws_iot]\ncontract_manufacturer = $ENV::CM\npolicy_name = P\n", "variables"},
		{"empty manufacturer", "[aws_iot]\ncontract_manufacturer =\npolicy_name = P\n", "contract_manufacturer is empty"},
		{"no equals", "[aws_iot]\ncontract_manufacturer\n", "p.conf:2: [aws_iot]: want key = value"},
	} {
		_, err := awsiot.ParseConfig("p.conf", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if _, err := awsiot.ParseConfig("p.conf", []byte("[dn]\n")); !errors.Is(err, awsiot.ErrNoSection) {
		t.Errorf("no section: %v, want ErrNoSection", err)
	}
}

func TestRegisteredCAIsTheManufacturers(t *testing.T) {
	t.Parallel()
	c := loadConfig(t)
	a, b := newLine(t, "Other Manufacturer"), newLine(t, cm)
	got, err := c.RegisteredCA([]*x509.Certificate{a.ca, b.ca})
	if err != nil || got != b.ca {
		t.Fatalf("RegisteredCA: %v, %v", got, err)
	}
	if _, err := c.RegisteredCA([]*x509.Certificate{a.ca}); err == nil || !strings.Contains(err.Error(), cm) {
		t.Errorf("without the manufacturer's CA: %v, want an error naming %q", err, cm)
	}
}

// validate checks JSON documents (files, or JSON lines with jsonl) against a schema in docs/ with
// python3-jsonschema, an independent validator. It returns the validator's complaints.
func validate(t *testing.T, schema string, jsonl bool, files ...string) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing (scripts/deps.sh installs python3-jsonschema)")
		}
		t.Skip("python3 missing: the schema check needs python3-jsonschema")
	}
	script := `
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
jsonl = sys.argv[2] == "1"
bad = 0
for f in sys.argv[3:]:
    docs = [json.loads(l) for l in open(f) if l.strip()] if jsonl else [json.load(open(f))]
    for i, d in enumerate(docs):
        for e in v.iter_errors(d):
            print(f"{f}:{i+1}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
            bad += 1
sys.exit(1 if bad else 0)
`
	flag := "0"
	if jsonl {
		flag = "1"
	}
	out, err := exec.Command("python3", append([]string{"-c", script, schema, flag}, files...)...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No module named 'jsonschema'") {
			if os.Getenv("CI") == "true" {
				t.Fatal("python3-jsonschema is missing")
			}
			t.Skip("python3-jsonschema missing")
		}
		if len(out) == 0 {
			t.Fatalf("python3: %v", err)
		}
		return string(out)
	}
	return ""
}

// The bulk registration file and both templates validate against the schemas in docs/; a broken
// line does not (the judge can fail); each line holds the thing's certificate.
func TestOutputsValidate(t *testing.T) {
	t.Parallel()
	c := loadConfig(t)
	l := newLine(t, cm)
	var leaves []*x509.Certificate
	for i := range 3 {
		is, _ := l.device(t, fmt.Sprintf("example-sensor-%04d", i+1), fmt.Sprintf("SN%04d", i+1))
		leaves = append(leaves, is.Certificate)
	}
	bulk, err := awsiot.BulkFile(leaves, l.ca)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bulkFile := write("bulk.jsonl", bulk)
	if msg := validate(t, lineSchema, true, bulkFile); msg != "" {
		t.Errorf("bulk file:\n%s", msg)
	}
	lines := bytes.Split(bytes.TrimSuffix(bulk, []byte("\n")), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	for i, raw := range lines {
		var bl awsiot.BulkLine
		if err := json.Unmarshal(raw, &bl); err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode([]byte(bl.CertificatePem))
		if block == nil || !bytes.Equal(block.Bytes, leaves[i].Raw) || bl.ThingName != leaves[i].Subject.CommonName || bl.SerialNumber != fmt.Sprintf("SN%04d", i+1) {
			t.Errorf("line %d: %s", i+1, raw)
		}
	}
	broken := write("broken.jsonl", []byte(`{"ThingName":"has space","CertificatePem":"x"}`+"\n"))
	if msg := validate(t, lineSchema, true, broken); !strings.Contains(msg, "ThingName") {
		t.Errorf("a broken line passed the schema: %q", msg)
	}

	for name, gen := range map[string]func() ([]byte, error){"bulk-template.json": c.BulkTemplate, "jitp-template.json": c.JITPTemplate} {
		data, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		if msg := validate(t, templateSchema, false, write(name, data)); msg != "" {
			t.Errorf("%s:\n%s", name, msg)
		}
		checkRefs(t, name, data)
	}
	jitp, _ := c.JITPTemplate()
	if !bytes.Contains(jitp, []byte(`"Ref": "AWS::IoT::Certificate::CommonName"`)) {
		t.Errorf("the JITP template does not take the thing name from the certificate's CN:\n%s", jitp)
	}
}

// checkRefs: every Ref in a template names a declared parameter (AWS IoT refuses others).
func checkRefs(t *testing.T, name string, data []byte) {
	t.Helper()
	var doc struct {
		Parameters map[string]any
		Resources  any
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	n := 0
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["Ref"].(string); ok {
				n++
				if _, ok := doc.Parameters[r]; !ok {
					t.Errorf("%s: Ref %q is not a declared parameter", name, r)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc.Resources)
	if n == 0 {
		t.Errorf("%s: no Ref at all", name)
	}
}

func TestBulkFileRefusals(t *testing.T) {
	t.Parallel()
	l, other := newLine(t, cm), newLine(t, "Other Manufacturer")
	a, _ := l.device(t, "sensor-1", "1")
	b, _ := l.device(t, "sensor-1", "2")
	if _, err := awsiot.BulkFile([]*x509.Certificate{a.Certificate, b.Certificate}, l.ca); err == nil || !strings.Contains(err.Error(), `"sensor-1" is the CN of two`) {
		t.Errorf("duplicate thing name: %v", err)
	}
	c, _ := other.device(t, "sensor-3", "3")
	if _, err := awsiot.BulkFile([]*x509.Certificate{c.Certificate}, l.ca); err == nil || !strings.Contains(err.Error(), "not signed by the registered CA") {
		t.Errorf("another manufacturer's certificate: %v", err)
	}
}

// The loopback mTLS check: the device's own chain and key connect; a chain from another
// manufacturer's CA is refused by the server; a key that is not the leaf's is refused; a CN that
// is no thing name is refused.
func TestCheckMTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, other := newLine(t, cm), newLine(t, "Other Manufacturer")
	is, key := l.device(t, "example-sensor-0042", "42")
	res, err := awsiot.CheckMTLS(ctx, is.Chain, key, l.ca, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.ThingName != "example-sensor-0042" || res.CertificateID != pki.Fingerprint(is.Certificate) || !strings.Contains(res.CA, cm) {
		t.Errorf("result %+v", res)
	}

	foreign, fkey := other.device(t, "example-sensor-0043", "43")
	_, err = awsiot.CheckMTLS(ctx, foreign.Chain, fkey, l.ca, 0)
	if err == nil || !strings.Contains(err.Error(), "the server") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("another manufacturer's chain: %v, want the server to refuse it", err)
	}
	if _, err := awsiot.CheckMTLS(ctx, is.Chain, fkey, l.ca, 0); err == nil || !strings.Contains(err.Error(), "not the key of certificate") {
		t.Errorf("a foreign key: %v", err)
	}
	bad, bkey := l.device(t, "example sensor", "44")
	if _, err := awsiot.CheckMTLS(ctx, bad.Chain, bkey, l.ca, 0); err == nil || !strings.Contains(err.Error(), "not an AWS IoT thing name") {
		t.Errorf("CN with a space: %v", err)
	}
}

func TestLoadDeviceKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	// As the simulated device keeps it: the private key, then its public key.
	p := filepath.Join(dir, "dha_key.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})...)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := awsiot.LoadDeviceKey(p)
	if err != nil || !key.PublicKey.Equal(s.Public()) {
		t.Fatalf("LoadDeviceKey: %v", err)
	}
	only := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(only, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := awsiot.LoadDeviceKey(only); err == nil || !strings.Contains(err.Error(), "no EC PRIVATE KEY") {
		t.Errorf("a public key only: %v", err)
	}
}

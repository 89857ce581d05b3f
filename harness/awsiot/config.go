package awsiot

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Section is the product profile section that makes a profile an AWS IoT profile.
const Section = "aws_iot"

// ErrNoSection: the profile has no [aws_iot] section (not an AWS IoT profile).
var ErrNoSection = errors.New("the profile has no [" + Section + "] section")

// Config is a profile's [aws_iot] section.
type Config struct {
	Path string // the profile
	// ContractManufacturer names the manufacturer whose CA signs this line's certificates: the
	// registered CA's subject Organization.
	ContractManufacturer string
	// PolicyName is the AWS IoT policy attached to each certificate (it exists in the account).
	PolicyName string
	// ThingType is the thing type of each thing; "" for none.
	ThingType string
}

// keys of the section, with whether each is required.
var configKeys = map[string]bool{"contract_manufacturer": true, "policy_name": true, "thing_type": false}

// policyName is AWS IoT's policy name rule.
var policyName = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

// LoadConfig reads the [aws_iot] section of the product profile at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", path, err)
	}
	return ParseConfig(path, data)
}

// ParseConfig reads the [aws_iot] section of profile text (OpenSSL config syntax, which openssl
// req ignores outside the sections it is pointed at). name is used in errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	c := &Config{Path: name}
	seen := map[string]int{}
	in, found := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				if in {
					return nil, fmt.Errorf("%s:%d: section header without ]", name, n)
				}
				continue
			}
			in = strings.TrimSpace(line[1:len(line)-1]) == Section
			if in {
				if found {
					return nil, fmt.Errorf("%s:%d: [%s] given twice", name, n, Section)
				}
				found = true
			}
			continue
		}
		if !in {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("%s:%d: [%s]: want key = value, got %q", name, n, Section, line)
		}
		if _, known := configKeys[key]; !known {
			return nil, fmt.Errorf("%s:%d: [%s]: unknown key %q (keys: contract_manufacturer, policy_name, thing_type)", name, n, Section, key)
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s:%d: [%s]: %s given twice (also line %d)", name, n, Section, key, prev)
		}
		seen[key] = n
		if strings.ContainsAny(value, `$"'\`) {
			return nil, fmt.Errorf("%s:%d: [%s]: %s: variables, quotes and escapes are not supported here", name, n, Section, key)
		}
		switch key {
		case "contract_manufacturer":
			c.ContractManufacturer = value
		case "policy_name":
			if !policyName.MatchString(value) {
				return nil, fmt.Errorf("%s:%d: [%s]: policy_name %q is not an AWS IoT policy name (1-128 of letters, digits and _+=,.@-)", name, n, Section, value)
			}
			c.PolicyName = value
		case "thing_type":
			if !thingNameRule.MatchString(value) {
				return nil, fmt.Errorf("%s:%d: [%s]: thing_type %q is not an AWS IoT thing type name (1-128 of letters, digits and :_-)", name, n, Section, value)
			}
			c.ThingType = value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", name, err)
	}
	if !found {
		return nil, fmt.Errorf("%s: %w", name, ErrNoSection)
	}
	for key, required := range configKeys {
		if required && seen[key] == 0 {
			return nil, fmt.Errorf("%s: [%s]: %s is required", name, Section, key)
		}
	}
	if c.ContractManufacturer == "" {
		return nil, fmt.Errorf("%s:%d: [%s]: contract_manufacturer is empty", name, seen["contract_manufacturer"], Section)
	}
	return c, nil
}

// thingNameRule is AWS IoT's thing name (and thing type name) rule.
var thingNameRule = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// ThingName is a device certificate's thing name: its subject CN, which must be a valid AWS IoT
// thing name.
func ThingName(cert *x509.Certificate) (string, error) {
	cn := cert.Subject.CommonName
	if !thingNameRule.MatchString(cn) {
		return "", fmt.Errorf("certificate %s: subject CN %q is not an AWS IoT thing name (1-128 of letters, digits and :_-)", certID(cert), cn)
	}
	return cn, nil
}

// RegisteredCA is the contract manufacturer's CA among candidates (the bench's DAK certificate
// and roots): a CA certificate whose subject Organization is the profile's contract_manufacturer.
func (c *Config) RegisteredCA(candidates []*x509.Certificate) (*x509.Certificate, error) {
	var names []string
	for _, cert := range candidates {
		if cert == nil {
			continue
		}
		for _, o := range cert.Subject.Organization {
			if o == c.ContractManufacturer && cert.IsCA {
				return cert, nil
			}
		}
		names = append(names, fmt.Sprintf("%q", cert.Subject.String()))
	}
	return nil, fmt.Errorf("no CA certificate of contract manufacturer %q (subject O=%s) among the bench's signer certificate and roots (%s): "+
		"sign with that manufacturer's CA, or correct contract_manufacturer in [%s] of %s",
		c.ContractManufacturer, c.ContractManufacturer, strings.Join(names, ", "), Section, c.Path)
}

// CertificateID is the id AWS IoT gives a certificate: the SHA-256 of its DER, in hex.
func CertificateID(cert *x509.Certificate) string { return certID(cert) }

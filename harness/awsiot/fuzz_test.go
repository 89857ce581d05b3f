package awsiot_test

import (
	"regexp"
	"strings"
	"testing"

	"hilbench/harness/awsiot"
)

// FuzzParseConfig: any profile text is either refused with an error naming the profile, or gives a
// section whose values keep AWS IoT's rules (a policy name, a thing type name, a manufacturer).
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("[aws_iot]\ncontract_manufacturer = Example CM\npolicy_name = P\nthing_type = t-1\n"))
	f.Add([]byte("[ req ]\nprompt = no\n[ aws_iot ] # the line\ncontract_manufacturer = A # B\npolicy_name = p@x\n"))
	f.Add([]byte("[aws_iot]\ncontract_manufacturer = $ENV::X\n"))
	f.Add([]byte("[aws_iot\n[aws_iot]\n[aws_iot]\n"))
	policy := regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	thing := regexp.MustCompile(`^[a-zA-Z0-9:_-]{0,128}$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := awsiot.ParseConfig("p.conf", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "p.conf") && !strings.HasPrefix(err.Error(), "reading profile p.conf") {
				t.Fatalf("error does not name the profile: %v", err)
			}
			return
		}
		if c.ContractManufacturer == "" || !policy.MatchString(c.PolicyName) || !thing.MatchString(c.ThingType) {
			t.Fatalf("accepted %+v", c)
		}
		if strings.ContainsAny(c.ContractManufacturer, "#\n$\"'\\") {
			t.Fatalf("manufacturer %q kept a comment, a line break, a variable or a quote", c.ContractManufacturer)
		}
	})
}

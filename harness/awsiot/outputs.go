package awsiot

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
)

// MaxTemplateBody is StartThingRegistrationTask's (and a CA's registration config's) limit on a
// provisioning template body, in characters.
const MaxTemplateBody = 10240

// BulkLine is one device's parameters in a bulk registration input file.
type BulkLine struct {
	ThingName      string `json:"ThingName"`
	SerialNumber   string `json:"SerialNumber,omitempty"`
	CertificatePem string `json:"CertificatePem"`
}

// Line is the bulk registration line of a device certificate signed by ca (the registered CA).
func Line(leaf, ca *x509.Certificate) (BulkLine, error) {
	name, err := ThingName(leaf)
	if err != nil {
		return BulkLine{}, err
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return BulkLine{}, fmt.Errorf("certificate %s (thing %s) is not signed by the registered CA %q: %w", certID(leaf), name, ca.Subject, err)
	}
	return BulkLine{
		ThingName:      name,
		SerialNumber:   leaf.Subject.SerialNumber,
		CertificatePem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
	}, nil
}

// BulkFile is the newline-delimited JSON input of StartThingRegistrationTask for leaves, in the
// order given. A thing name given twice is refused (AWS IoT would register one thing for both).
func BulkFile(leaves []*x509.Certificate, ca *x509.Certificate) ([]byte, error) {
	var buf bytes.Buffer
	seen := map[string]string{}
	for _, leaf := range leaves {
		l, err := Line(leaf, ca)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[l.ThingName]; dup {
			return nil, fmt.Errorf("thing name %q is the CN of two certificates (%s and %s)", l.ThingName, other, certID(leaf))
		}
		seen[l.ThingName] = certID(leaf)
		data, err := json.Marshal(l)
		if err != nil {
			return nil, err
		}
		buf.Write(data)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// template is a provisioning template (the AWS IoT developer guide, "Provisioning templates").
type template struct {
	Parameters map[string]parameter `json:"Parameters"`
	Resources  resources            `json:"Resources"`
}

type parameter struct {
	Type string `json:"Type"`
}

type resources struct {
	Thing       resource `json:"thing"`
	Certificate resource `json:"certificate"`
	Policy      resource `json:"policy"`
}

type resource struct {
	Type             string            `json:"Type"`
	Properties       map[string]any    `json:"Properties"`
	OverrideSettings map[string]string `json:"OverrideSettings,omitempty"`
}

type ref struct {
	Ref string `json:"Ref"`
}

// BulkTemplate is the provisioning template the bulk registration file's lines fill in: a thing
// named by ThingName, the certificate (signed by the registered CA) active, the profile's policy.
func (c *Config) BulkTemplate() ([]byte, error) {
	return c.render(template{
		Parameters: map[string]parameter{"ThingName": {"String"}, "SerialNumber": {"String"}, "CertificatePem": {"String"}},
		Resources: resources{
			Thing:       c.thing("ThingName", "SerialNumber"),
			Certificate: resource{Type: "AWS::IoT::Certificate", Properties: map[string]any{"CertificatePem": ref{"CertificatePem"}, "Status": "ACTIVE"}},
			Policy:      resource{Type: "AWS::IoT::Policy", Properties: map[string]any{"PolicyName": c.PolicyName}},
		},
	})
}

// JITPTemplate is the just-in-time provisioning template to attach to the registered CA: at a
// device's first connection AWS IoT fills its parameters from the certificate (the thing name is
// the subject CN), creates the thing, activates the certificate and attaches the policy.
func (c *Config) JITPTemplate() ([]byte, error) {
	const cn, sn, id = "AWS::IoT::Certificate::CommonName", "AWS::IoT::Certificate::SerialNumber", "AWS::IoT::Certificate::Id"
	return c.render(template{
		Parameters: map[string]parameter{cn: {"String"}, sn: {"String"}, id: {"String"}},
		Resources: resources{
			Thing:       c.thing(cn, sn),
			Certificate: resource{Type: "AWS::IoT::Certificate", Properties: map[string]any{"CertificateId": ref{id}, "Status": "ACTIVE"}},
			Policy:      resource{Type: "AWS::IoT::Policy", Properties: map[string]any{"PolicyName": c.PolicyName}},
		},
	})
}

func (c *Config) thing(nameParam, serialParam string) resource {
	props := map[string]any{
		"ThingName":        ref{nameParam},
		"AttributePayload": map[string]any{"serialNumber": ref{serialParam}, "contractManufacturer": c.ContractManufacturer},
	}
	if c.ThingType != "" {
		props["ThingTypeName"] = c.ThingType
	}
	return resource{Type: "AWS::IoT::Thing", Properties: props, OverrideSettings: map[string]string{"AttributePayload": "MERGE"}}
}

func (c *Config) render(t template) ([]byte, error) {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return nil, err
	}
	if n := len([]rune(string(data))); n > MaxTemplateBody {
		return nil, fmt.Errorf("the provisioning template is %d characters, AWS IoT takes at most %d", n, MaxTemplateBody)
	}
	return append(data, '\n'), nil
}

func certID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

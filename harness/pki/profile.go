package pki

import (
	"encoding/asn1"
	"fmt"
	"os"
	"strings"
)

// ProfileOptions say how to read a product profile.
type ProfileOptions struct {
	ExtensionsSection string   // default "req_ext" (the -extensions argument)
	DeviceTypeField   string   // [dn] attribute that carries the device type id; default "DeviceTypeId"
	PerDeviceFields   []string // [dn] attributes whose value differs per device (e.g. "CN", "serialNumber"): must be present, any non-empty value
}

// Default option values.
const (
	DefaultExtensionsSection = "req_ext"
	DefaultDeviceTypeField   = "DeviceTypeId"
)

// SubjectField is one attribute the profile requires in a CSR subject.
type SubjectField struct {
	Name      string                // as the profile spells it ("CN", "DeviceTypeId")
	OID       asn1.ObjectIdentifier // attribute type
	Value     string                // required value; for PerDevice fields the profile's example value (may be "")
	PerDevice bool                  // any non-empty value is accepted
	Line      int                   // line in the profile; 0 for a per-device field the profile does not list
}

// Profile is a parsed product profile (device.conf).
type Profile struct {
	Path          string
	DeviceTypeID  string                // value of the device type field in [dn]
	DeviceTypeOID asn1.ObjectIdentifier // OID of the device type field
	Subject       []SubjectField        // from [dn], in order, then per-device fields [dn] does not list

	// ExtensionsSection is the section the extensions come from, and
	// Extensions what it asks for, in order (before openssl's default
	// subjectKeyIdentifier/authorityKeyIdentifier are applied at issuance).
	ExtensionsSection string
	Extensions        []Extension

	// Notes are warnings about how the profile was read, for the caller to
	// print (a device type field found under another capitalisation).
	Notes []string

	customNames map[string]asn1.ObjectIdentifier // oid_section short names
}

// DeviceTypeFieldKey is the bench key that names the [dn] field holding the
// Device Type ID; profile errors about that field point to it.
const DeviceTypeFieldKey = "profile.device_type_field"

// LoadProfile reads a device.conf (OpenSSL config syntax) as the product profile.
func LoadProfile(path string, opts ProfileOptions) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", path, err)
	}
	return ParseProfile(path, data, opts)
}

// ParseProfile parses profile text; name is used in errors and as Path.
func ParseProfile(name string, data []byte, opts ProfileOptions) (*Profile, error) {
	if opts.ExtensionsSection == "" {
		opts.ExtensionsSection = DefaultExtensionsSection
	}
	if opts.DeviceTypeField == "" {
		opts.DeviceTypeField = DefaultDeviceTypeField
	}
	conf, err := parseConf(name, data)
	if err != nil {
		return nil, err
	}
	p := &Profile{Path: name, ExtensionsSection: opts.ExtensionsSection, customNames: map[string]asn1.ObjectIdentifier{}}
	if err := p.loadOIDSection(conf); err != nil {
		return nil, err
	}
	if err := p.loadSubject(conf, opts); err != nil {
		return nil, err
	}
	if err := p.loadExtensions(conf, opts.ExtensionsSection); err != nil {
		return nil, err
	}
	return p, nil
}

// loadOIDSection reads "oid_section = X" the way openssl req does: each entry
// of [X] is "shortName = dotted.oid" (the "long name, oid" form of the
// config module is not accepted by req, so it is refused here too).
func (p *Profile) loadOIDSection(conf *confFile) error {
	if e, ok := conf.get(defaultSection, "oid_file"); ok {
		return conf.errorf(e.line, "", e.key, ErrProfileUnsupported, "oid_file is not supported; use oid_section")
	}
	ref, ok := conf.get(defaultSection, "oid_section")
	if !ok {
		return nil
	}
	entries, ok := conf.section(ref.value)
	if !ok {
		return conf.errorf(ref.line, "", ref.key, ErrProfileMissingSection, "section [%s] not found", ref.value)
	}
	for _, e := range entries {
		oid, ok := parseDottedOID(strings.TrimSpace(e.value))
		if !ok {
			return conf.errorf(e.line, e.section, e.key, ErrProfileInvalidValue, "%q is not a dotted OID", e.value)
		}
		if known, ok := p.builtinOrCustom(e.key); ok {
			return conf.errorf(e.line, e.section, e.key, ErrProfileInvalidValue, "name is already defined as %s", known)
		}
		for _, t := range [][]objName{attributeNames, extensionNames, extKeyUsageNames} {
			for _, o := range t {
				if o.oid.Equal(oid) {
					return conf.errorf(e.line, e.section, e.key, ErrProfileInvalidValue, "OID %s is already known as %s", oid, o.short)
				}
			}
		}
		p.customNames[e.key] = oid
	}
	return nil
}

// builtinOrCustom resolves an attribute name the way OBJ_txt2nid does for a
// [dn] key: OpenSSL short or long names, then oid_section names.
func (p *Profile) builtinOrCustom(name string) (asn1.ObjectIdentifier, bool) {
	if oid, ok := lookupName(attributeNames, name); ok {
		return oid, true
	}
	oid, ok := p.customNames[name]
	return oid, ok
}

// attributeName gives the name this profile uses for an attribute OID.
func (p *Profile) attributeName(oid asn1.ObjectIdentifier) string {
	for _, f := range p.Subject {
		if f.OID.Equal(oid) {
			return f.Name
		}
	}
	for n, o := range p.customNames {
		if o.Equal(oid) {
			return n
		}
	}
	return nameForOID(oid)
}

// dnKeyName strips what openssl req strips from a [dn] key: anything up to
// and including the first ':', ',' or '.' ("0.OU" -> "OU"), and a leading '+'
// (which only makes a multi-valued RDN; CSR checks look at attributes, not RDNs).
func dnKeyName(key string) string {
	if i := strings.IndexAny(key, ":,."); i >= 0 && i+1 < len(key) {
		key = key[i+1:]
	}
	return strings.TrimPrefix(key, "+")
}

func (p *Profile) loadSubject(conf *confFile, opts ProfileOptions) error {
	dnSection := "dn"
	if _, ok := conf.section("req"); ok {
		if e, ok := conf.lookup("req", "distinguished_name"); ok {
			dnSection = e.value
		}
		prompt, ok := conf.lookup("req", "prompt")
		if !ok || prompt.value != "no" {
			line := conf.lines["req"]
			if ok {
				line = prompt.line
			}
			return conf.errorf(line, "req", "prompt", ErrProfileUnsupported, "only prompt = no profiles are supported (with prompting, [%s] holds questions, not values)", dnSection)
		}
	}
	entries, ok := conf.section(dnSection)
	if !ok {
		return conf.errorf(0, "", "", ErrProfileMissingSection, "distinguished name section [%s] not found", dnSection)
	}
	if len(entries) == 0 {
		return conf.errorf(conf.lines[dnSection], dnSection, "", ErrProfileInvalidValue, "no subject attributes")
	}

	perDevice := map[string]string{} // OID -> name as given in the options
	var perDeviceOrder []asn1.ObjectIdentifier
	for _, name := range opts.PerDeviceFields {
		oid, ok := p.builtinOrCustom(name)
		if !ok {
			return conf.errorf(0, dnSection, name, ErrProfileUnknownName, "per-device field is not an attribute name OpenSSL or the profile's oid_section defines")
		}
		if _, dup := perDevice[oid.String()]; !dup {
			perDeviceOrder = append(perDeviceOrder, oid)
		}
		perDevice[oid.String()] = name
	}
	typeOID, ok := p.builtinOrCustom(opts.DeviceTypeField)
	if !ok && opts.DeviceTypeField == DefaultDeviceTypeField {
		// The default name under another capitalisation ("deviceTypeId"):
		// taken, with a note, when exactly one [dn] field is spelled so.
		if name, found := foldedField(entries, opts.DeviceTypeField); found {
			if oid, known := p.builtinOrCustom(name); known {
				p.Notes = append(p.Notes, fmt.Sprintf("profile %s: [%s] has no %s but has %s: taken as the device type field (set %s: %s in the bench to say so)",
					p.Path, dnSection, opts.DeviceTypeField, name, DeviceTypeFieldKey, name))
				opts.DeviceTypeField, typeOID, ok = name, oid, true
			}
		}
	}
	if !ok {
		return conf.errorf(0, dnSection, opts.DeviceTypeField, ErrProfileUnknownName,
			"device type field is not an attribute name OpenSSL or the profile's oid_section defines; [%s] has %s: set the bench's %s to the field that holds the Device Type ID",
			dnSection, dnFieldList(entries), DeviceTypeFieldKey)
	}
	if _, ok := perDevice[typeOID.String()]; ok {
		return conf.errorf(0, dnSection, opts.DeviceTypeField, ErrProfileInvalidValue, "the device type field cannot be a per-device field")
	}
	p.DeviceTypeOID = typeOID

	for _, e := range entries {
		name := dnKeyName(e.key)
		oid, ok := p.builtinOrCustom(name)
		if !ok {
			return conf.errorf(e.line, e.section, name, ErrProfileUnknownName, "unknown attribute name %q (not an OpenSSL attribute and not in oid_section)", name)
		}
		_, per := perDevice[oid.String()]
		if e.value == "" && !per {
			return conf.errorf(e.line, e.section, name, ErrProfileInvalidValue, "empty value")
		}
		p.Subject = append(p.Subject, SubjectField{Name: name, OID: oid, Value: e.value, PerDevice: per, Line: e.line})
	}
	for _, oid := range perDeviceOrder {
		found := false
		for _, f := range p.Subject {
			found = found || f.OID.Equal(oid)
		}
		if !found {
			p.Subject = append(p.Subject, SubjectField{Name: perDevice[oid.String()], OID: oid, PerDevice: true})
		}
	}

	var typeField *SubjectField
	for i := range p.Subject {
		if p.Subject[i].OID.Equal(typeOID) {
			if typeField != nil {
				return conf.errorf(p.Subject[i].Line, dnSection, p.Subject[i].Name, ErrProfileInvalidValue, "device type field given twice (also line %d)", typeField.Line)
			}
			typeField = &p.Subject[i]
		}
	}
	if typeField == nil {
		return conf.errorf(conf.lines[dnSection], dnSection, opts.DeviceTypeField, ErrProfileInvalidValue, "no %s (%s) attribute: the profile must name the device type; [%s] has %s: set the bench's %s to the field that holds the Device Type ID",
			opts.DeviceTypeField, typeOID, dnSection, dnFieldList(entries), DeviceTypeFieldKey)
	}
	p.DeviceTypeID = typeField.Value
	return nil
}

// foldedField finds the one [dn] field whose name equals name but for case.
func foldedField(entries []*confEntry, name string) (string, bool) {
	found := ""
	for _, e := range entries {
		if n := dnKeyName(e.key); strings.EqualFold(n, name) {
			if found != "" && found != n {
				return "", false
			}
			found = n
		}
	}
	return found, found != ""
}

// dnFieldList names the fields of a [dn] section, for errors.
func dnFieldList(entries []*confEntry) string {
	if len(entries) == 0 {
		return "no fields"
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = dnKeyName(e.key)
	}
	return strings.Join(names, ", ")
}

func (p *Profile) loadExtensions(conf *confFile, section string) error {
	entries, ok := conf.section(section)
	if !ok {
		return conf.errorf(0, "", "", ErrProfileMissingSection, "extensions section [%s] not found (the -extensions argument)", section)
	}
	oidSect := map[string]bool{}
	for n := range p.customNames {
		oidSect[n] = true
	}
	ep := &extParser{conf: conf, oidSect: oidSect}
	seen := map[string]*Extension{}
	for _, e := range entries {
		ext, err := ep.parse(e)
		if err != nil {
			return err
		}
		if prev, dup := seen[ext.OID.String()]; dup {
			return conf.errorf(e.line, e.section, e.key, ErrProfileUnsupported, "extension %s is already given by %s on line %d", ext.OID, prev.Name, prev.Line)
		}
		seen[ext.OID.String()] = ext
		p.Extensions = append(p.Extensions, *ext)
	}
	return nil
}

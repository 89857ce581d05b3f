package pki

import (
	"errors"
	"strings"
	"testing"
)

// TestProfileDeviceTypeFieldCase: a device.conf that spells the default
// device type field another way ("deviceTypeId") is read with a note the
// caller prints; a profile without it is refused with the [dn] fields found
// and the bench key that names the field.
func TestProfileDeviceTypeFieldCase(t *testing.T) {
	lower := strings.ReplaceAll(baseProfile, "DeviceTypeId", "deviceTypeId")
	p, err := ParseProfile("prof.conf", []byte(lower), ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.DeviceTypeID != "T" || p.DeviceTypeOID.String() != "1.3.6.1.4.1.4843.1.3" {
		t.Errorf("device type %q %v", p.DeviceTypeID, p.DeviceTypeOID)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "deviceTypeId") || !strings.Contains(p.Notes[0], "profile.device_type_field") {
		t.Errorf("notes %q", p.Notes)
	}

	// The exact default name gives no note.
	if p, err := ParseProfile("prof.conf", []byte(baseProfile), ProfileOptions{}); err != nil || len(p.Notes) != 0 {
		t.Errorf("base profile: %v, notes %q", err, p.Notes)
	}

	// A name the bench gives explicitly is taken as is: no guessing.
	_, err = ParseProfile("prof.conf", []byte(lower), ProfileOptions{DeviceTypeField: "DEVICETYPEID"})
	if !errors.Is(err, ErrProfileUnknownName) {
		t.Errorf("explicit other case: %v", err)
	}

	// Misspelt beyond case: refused with the fields of [dn] and the bench key.
	other := strings.ReplaceAll(baseProfile, "DeviceTypeId", "DeviceType")
	_, err = ParseProfile("prof.conf", []byte(other), ProfileOptions{})
	if !errors.Is(err, ErrProfileUnknownName) {
		t.Fatalf("misspelt: %v", err)
	}
	for _, want := range []string{"[dn] has CN, DeviceType", "profile.device_type_field"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("misspelt: %q does not say %q", err, want)
		}
	}

	// Defined in oid_section but missing from [dn]: the same help.
	_, err = ParseProfile("prof.conf", []byte(strings.Replace(baseProfile, "DeviceTypeId = T\n", "", 1)), ProfileOptions{})
	if !errors.Is(err, ErrProfileInvalidValue) || !strings.Contains(err.Error(), "[dn] has CN:") || !strings.Contains(err.Error(), "profile.device_type_field") {
		t.Errorf("missing: %v", err)
	}
}

package label

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Placeholders a payload template may hold; {puk} and {pin} it must.
const (
	PlaceSerial = "{serial}"
	PlacePUK    = "{puk}"
	PlacePIN    = "{pin}"
)

// DefaultTemplate is the FFS inner (product) barcode of the Provisionee 2D Barcode
// Specification with a placeholder product id: the bench gives the real PID.
const DefaultTemplate = "ABV:IB01;SERNUM:{serial};PID:XXXX;PUK:{puk};PIN:{pin};"

// ErrTemplate: a payload template the bench should not hold.
var ErrTemplate = errors.New("label template")

// ErrValue: a device's value cannot go into the payload.
var ErrValue = errors.New("label value")

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// CheckTemplate checks a payload template: printable ASCII, known placeholders only, {puk} and
// {pin} present once each.
func CheckTemplate(tmpl string) error {
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] < 0x20 || tmpl[i] > 0x7e {
			return fmt.Errorf("%w: character %d is not printable ASCII", ErrTemplate, i+1)
		}
	}
	for _, m := range placeholder.FindAllString(tmpl, -1) {
		if !slices.Contains([]string{PlaceSerial, PlacePUK, PlacePIN}, m) {
			return fmt.Errorf("%w: unknown placeholder %s (known: %s, %s, %s)", ErrTemplate, m, PlaceSerial, PlacePUK, PlacePIN)
		}
	}
	for _, p := range []string{PlacePUK, PlacePIN} {
		if n := strings.Count(tmpl, p); n != 1 {
			return fmt.Errorf("%w: %s appears %d times, want once (the FFS inner barcode carries the device's key and setup PIN)", ErrTemplate, p, n)
		}
	}
	return nil
}

// Values are one device's parts of the payload.
type Values struct {
	Serial string // the device's serial/DSN
	PUK    string // the compressed DHA public key, base64
	PIN    string // the setup PIN (secret: never in an error)
}

// Payload fills the template. The values may not hold the payload's separators (; and :),
// which would change its fields; the FFS specification allows 12-50 characters for SERNUM.
func Payload(tmpl string, v Values) (string, error) {
	if err := CheckTemplate(tmpl); err != nil {
		return "", err
	}
	if strings.Contains(tmpl, PlaceSerial) {
		if err := field("serial", v.Serial, true); err != nil {
			return "", err
		}
		if n := len(v.Serial); n < 12 || n > 50 {
			return "", fmt.Errorf("%w: serial %q is %d characters; SERNUM takes 12 to 50", ErrValue, v.Serial, n)
		}
	}
	if err := field("public key", v.PUK, true); err != nil {
		return "", err
	}
	if err := field("setup PIN", v.PIN, false); err != nil {
		return "", err
	}
	return strings.NewReplacer(PlaceSerial, v.Serial, PlacePUK, v.PUK, PlacePIN, v.PIN).Replace(tmpl), nil
}

// field checks one value; show says whether the value may be quoted in the error.
func field(name, v string, show bool) error {
	what := name
	if show {
		what = fmt.Sprintf("%s %q", name, v)
	}
	if v == "" {
		return fmt.Errorf("%w: no %s", ErrValue, name)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == ':' {
			return fmt.Errorf("%w: %s: character %d is not allowed (printable ASCII other than ; and :)", ErrValue, what, i+1)
		}
	}
	return nil
}

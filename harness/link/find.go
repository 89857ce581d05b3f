package link

import (
	"fmt"
	"strings"

	"go.bug.st/serial/enumerator"
)

// Enumerate lists serial ports with their USB details. It is a variable so
// tests can replace it: this machine, like CI, has no USB bus.
var Enumerate = enumerator.GetDetailedPortsList

// FindError explains why Find did not return exactly one port. It wraps
// ErrNotFound or ErrAmbiguous.
type FindError struct {
	ID      USBID
	Matches []string                 // port names that matched (ambiguity)
	Seen    []enumerator.PortDetails // everything enumerated (for "not found")
	Err     error                    // ErrNotFound or ErrAmbiguous
}

func (e *FindError) Error() string {
	if len(e.Matches) > 1 {
		return fmt.Sprintf("link: USB %s matches %d ports (%s); add the adapter's serial to pick one: %v",
			e.ID, len(e.Matches), strings.Join(e.Matches, ", "), e.Err)
	}
	var seen []string
	for _, p := range e.Seen {
		if p.IsUSB {
			s := fmt.Sprintf("%s (USB %s:%s", p.Name, normHex(p.VID), normHex(p.PID))
			if p.SerialNumber != "" {
				s += " serial=" + p.SerialNumber
			}
			seen = append(seen, s+")")
		} else {
			seen = append(seen, p.Name+" (not USB)")
		}
	}
	list := "no serial ports at all"
	if len(seen) > 0 {
		list = strings.Join(seen, ", ")
	}
	return fmt.Sprintf("link: no serial port with USB %s; found: %s: %v", e.ID, list, e.Err)
}

func (e *FindError) Unwrap() error { return e.Err }

// Find returns the device path of the one serial port whose USB identity
// matches id. VID/PID compare case-insensitively as hex; Serial, when set,
// must match exactly (ignoring case).
func Find(id USBID) (string, error) {
	if err := id.validate(); err != nil {
		return "", err
	}
	ports, err := Enumerate()
	if err != nil {
		return "", fmt.Errorf("link: enumerating serial ports for USB %s: %w", id, err)
	}
	var matches []string
	seen := make([]enumerator.PortDetails, 0, len(ports))
	for _, p := range ports {
		if p == nil {
			continue
		}
		seen = append(seen, *p)
		if !p.IsUSB || normHex(p.VID) != normHex(id.VID) || normHex(p.PID) != normHex(id.PID) {
			continue
		}
		if id.Serial != "" && !strings.EqualFold(p.SerialNumber, id.Serial) {
			continue
		}
		matches = append(matches, p.Name)
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", &FindError{ID: id, Seen: seen, Err: ErrNotFound}
	default:
		return "", &FindError{ID: id, Matches: matches, Seen: seen, Err: ErrAmbiguous}
	}
}

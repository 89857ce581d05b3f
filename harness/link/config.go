package link

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.bug.st/serial"
)

// Defaults applied by Open for zero Config fields.
const (
	DefaultBaud     = 115200
	DefaultDataBits = 8
	// maxBaud is the fastest rate Linux termios knows (B4000000).
	maxBaud = 4000000
)

// Config says where a serial port is and how to talk to it.
type Config struct {
	Port     string        // device path, e.g. /dev/ttyUSB0 or a pty /dev/pts/N (or a symlink to one)
	USB      *USBID        // alternatively find the port by USB identity
	Baud     int           // default 115200
	DataBits int           // default 8
	Parity   string        // none|even|odd|mark|space (default none)
	StopBits string        // "1"|"1.5"|"2" (default "1")
	Reopen   time.Duration // if >0: Read/Write wait up to this long for a vanished port to come back
}

// USBID identifies a USB-serial adapter as lsusb shows it.
type USBID struct {
	VID, PID string // 4 hex digits, e.g. "0403"; a "0x" prefix is accepted
	Serial   string // optional iSerial string
}

// String renders the identity as "0403:6001" or "0403:6001 serial=FT1234".
func (id USBID) String() string {
	s := normHex(id.VID) + ":" + normHex(id.PID)
	if id.Serial != "" {
		s += " serial=" + id.Serial
	}
	return s
}

// ConfigError reports an invalid Config field.
type ConfigError struct {
	Field  string // Go field path, e.g. "Parity" or "USB.VID"
	Value  string // the offending value, quoted by Error
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("link: config field %s = %q: %s", e.Field, e.Value, e.Reason)
}

// Validate checks the config without touching any device.
func (c Config) Validate() error {
	_, err := c.mode()
	if err != nil {
		return err
	}
	switch {
	case c.Port == "" && c.USB == nil:
		return &ConfigError{Field: "Port", Reason: "set Port or USB"}
	case c.Port != "" && c.USB != nil:
		return &ConfigError{Field: "USB", Value: c.USB.String(), Reason: "Port and USB are mutually exclusive"}
	}
	if c.USB != nil {
		if err := c.USB.validate(); err != nil {
			return err
		}
	}
	if c.Reopen < 0 {
		return &ConfigError{Field: "Reopen", Value: c.Reopen.String(), Reason: "must not be negative"}
	}
	return nil
}

func (id USBID) validate() error {
	if !isHex4(id.VID) {
		return &ConfigError{Field: "USB.VID", Value: id.VID, Reason: "want 4 hex digits as in lsusb, e.g. 0403"}
	}
	if !isHex4(id.PID) {
		return &ConfigError{Field: "USB.PID", Value: id.PID, Reason: "want 4 hex digits as in lsusb, e.g. 6001"}
	}
	return nil
}

// mode converts the line settings, applying defaults.
func (c Config) mode() (*serial.Mode, error) {
	m := &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	if m.BaudRate == 0 {
		m.BaudRate = DefaultBaud
	}
	if m.BaudRate < 0 || m.BaudRate > maxBaud {
		return nil, &ConfigError{Field: "Baud", Value: strconv.Itoa(c.Baud), Reason: fmt.Sprintf("want 1..%d", maxBaud)}
	}
	if m.DataBits == 0 {
		m.DataBits = DefaultDataBits
	}
	if m.DataBits < 5 || m.DataBits > 8 {
		return nil, &ConfigError{Field: "DataBits", Value: strconv.Itoa(c.DataBits), Reason: "want 5, 6, 7 or 8"}
	}
	switch strings.ToLower(c.Parity) {
	case "", "none", "n":
		m.Parity = serial.NoParity
	case "even", "e":
		m.Parity = serial.EvenParity
	case "odd", "o":
		m.Parity = serial.OddParity
	case "mark", "m":
		m.Parity = serial.MarkParity
	case "space", "s":
		m.Parity = serial.SpaceParity
	default:
		return nil, &ConfigError{Field: "Parity", Value: c.Parity, Reason: "want none, even, odd, mark or space"}
	}
	switch c.StopBits {
	case "", "1":
		m.StopBits = serial.OneStopBit
	case "1.5":
		// POSIX termios has no 1.5 stop bits (CSTOPB means 1.5 only with 5
		// data bits, and go.bug.st/serial refuses it outright on Unix): say so
		// now rather than as an opaque driver error at open.
		if runtime.GOOS != "windows" {
			return nil, &ConfigError{Field: "StopBits", Value: c.StopBits, Reason: "1.5 stop bits are not supported by go.bug.st/serial on " + runtime.GOOS}
		}
		m.StopBits = serial.OnePointFiveStopBits
	case "2":
		m.StopBits = serial.TwoStopBits
	default:
		return nil, &ConfigError{Field: "StopBits", Value: c.StopBits, Reason: `want "1", "1.5" or "2"`}
	}
	return m, nil
}

func normHex(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.TrimPrefix(s, "0x")
}

func isHex4(s string) bool {
	s = normHex(s)
	if len(s) != 4 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

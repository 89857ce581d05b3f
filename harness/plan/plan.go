// Package plan reads a station's test plan: the ordered phases every DUT goes through at the
// end-of-line station (flash, provision, verify, reboot, factory reset, power cycle, a shell
// command with a measurement), each with its timeout, retries and whether a failure stops the
// DUT's test. OpenHTF's phases and measurements are the model.
//
// # Concepts
//
//   - Plan: a name, how the DUT's serial is read (dut_id), what happens to the slot when a test
//     ends (release), and the phases in order.
//   - Phase: a type, a name (default: the type), timeout, retries (extra attempts after a
//     failure), continue_on_failure (a failure is recorded and the next phase still runs).
//   - Measurement: a regexp capture of a shell command's output, judged against numeric limits
//     (min, max) or an exact value (equals), with units for the record.
//   - Errors: every problem at once, each naming file, line and field (as bench files do).
package plan

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Phase types.
const (
	TypeFlash        = "flash"         // write an image, check the booted version
	TypeProvision    = "provision"     // give the DUT its identity (issued once per device key)
	TypeVerify       = "verify"        // read the chain back and verify it against the ledger's record
	TypeReboot       = "reboot"        // reboot, then verify
	TypeFactoryReset = "factory_reset" // factory reset, then verify
	TypePowerCycle   = "power_cycle"   // cut and restore power, then verify
	TypeShell        = "shell"         // a shell command, optionally with a measurement
)

// Types lists the phase types a plan may name.
func Types() []string {
	return []string{TypeFlash, TypeProvision, TypeVerify, TypeReboot, TypeFactoryReset, TypePowerCycle, TypeShell}
}

// Already-provisioned DUTs: what provision does with a DUT that holds an identity the ledger
// does not record as its own.
const (
	AlreadyRefuse      = "refuse"      // the phase fails (the identity may be registered in the field)
	AlreadyReprovision = "reprovision" // the identity is replaced
)

// Release: what the station does with a slot when a DUT's test ends.
const (
	ReleaseNone     = "none"      // nothing; the operator pulls the DUT (its console goes silent)
	ReleasePowerOff = "power_off" // switch the slot's power off, so the DUT is safe to pull
)

// Defaults.
const (
	DefaultTimeout      = 2 * time.Minute
	DefaultFlashTimeout = 10 * time.Minute
	MaxRetries          = 10
)

// Plan is a parsed, validated test plan.
type Plan struct {
	File    string  // the path it was read from
	Name    string  // the plan's name, in every record
	DUTID   *Shell  // how to read the DUT's serial when the device does not report one itself; nil: none
	Release string  // ReleaseNone or ReleasePowerOff
	Phases  []Phase // in order
}

// Shell is a command run on the DUT's console and the capture that picks a value out of its
// output: the regexp's first group (the whole match when it has none).
type Shell struct {
	Command string
	Regexp  *regexp.Regexp
}

// Capture returns the value the regexp picks out of out.
func (s *Shell) Capture(out string) (string, bool) {
	m := s.Regexp.FindStringSubmatch(out)
	if m == nil {
		return "", false
	}
	if len(m) > 1 {
		return m[1], true
	}
	return m[0], true
}

// Phase is one step of the plan.
type Phase struct {
	Name              string
	Type              string
	Line              int // where the phase starts in the plan file
	Timeout           time.Duration
	Retries           int
	ContinueOnFailure bool

	// flash
	Image         string // absolute path (relative paths are taken from the plan file's directory)
	ExpectVersion string
	// provision
	AlreadyProvisioned string // AlreadyRefuse or AlreadyReprovision
	// shell
	Command     string
	Measurement *Measurement
}

// Measurement is a value captured from a shell phase's output and judged against limits.
type Measurement struct {
	Name   string
	Regexp *regexp.Regexp
	Min    *float64 // numeric limits: the value must parse as a number within them
	Max    *float64
	Equals *string // an exact value
	Units  string
}

// Judge checks a captured value against the limits: "" when it passes, else why not.
func (m *Measurement) Judge(value string) string {
	if m.Equals != nil {
		if value != *m.Equals {
			return fmt.Sprintf("%s is %q, want %q", m.Name, value, *m.Equals)
		}
		return ""
	}
	if m.Min == nil && m.Max == nil {
		return ""
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil {
		return fmt.Sprintf("%s is %q, not a number", m.Name, value)
	}
	unit := ""
	if m.Units != "" {
		unit = " " + m.Units
	}
	if m.Min != nil && v < *m.Min {
		return fmt.Sprintf("%s is %g%s, below the minimum %g%s", m.Name, v, unit, *m.Min, unit)
	}
	if m.Max != nil && v > *m.Max {
		return fmt.Sprintf("%s is %g%s, above the maximum %g%s", m.Name, v, unit, *m.Max, unit)
	}
	return ""
}

// Capture returns the value the measurement's regexp picks out of out (its first group).
func (m *Measurement) Capture(out string) (string, bool) {
	return (&Shell{Regexp: m.Regexp}).Capture(out)
}

// Has reports whether the plan has a phase of type t.
func (p *Plan) Has(t string) bool {
	for _, ph := range p.Phases {
		if ph.Type == t {
			return true
		}
	}
	return false
}

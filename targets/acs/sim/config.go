package sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Device-side faults, switched with Device.SetFault. Each one is a file in
// <Dir>/faults that the simulated firmware (the ace script, the boot code)
// looks at when it runs, so a fault takes effect on the next command or boot,
// never in the middle of one.
const (
	// FaultCSRTruncated: `ace hal dha get_field 0x201` prints only the first
	// half of the CSR PEM (cut mid-line, no final newline), exit status 0.
	FaultCSRTruncated = "csr_truncated"
	// FaultCSRMissing: `ace hal dha get_field 0x201` prints nothing, exit 0.
	FaultCSRMissing = "csr_missing"
	// FaultSetCertReject: `ace hal dha set_cert FILE` fails with an error on
	// stderr and exit status 1, and stores nothing.
	FaultSetCertReject = "set_cert_reject"
	// FaultChainCorrupt: `ace hal dha get_field 0x202` prints the stored chain
	// with one base64 character of the first certificate changed.
	FaultChainCorrupt = "chain_corrupt"
	// FaultNoPrompt: shells started after the next boot run with an empty PS1,
	// so the console shows no prompt at all.
	FaultNoPrompt = "no_prompt"
	// FaultLoadyAbort: the next `loady` gives up half-way through the image (CAN CAN and an
	// "## Aborted" line), once; the fault then clears itself.
	FaultLoadyAbort = "loady_abort"
	// FaultNoBootloader: `reboot_bootloader` reboots into the firmware instead of the boot ROM.
	FaultNoBootloader = "no_bootloader"
)

// AllFaults returns every fault name SetFault accepts.
func AllFaults() []string {
	return []string{FaultCSRTruncated, FaultCSRMissing, FaultSetCertReject, FaultChainCorrupt, FaultNoPrompt,
		FaultLoadyAbort, FaultNoBootloader}
}

// Defaults for the zero values of Config.
const (
	DefaultBootDelay = 300 * time.Millisecond
	DefaultFirmware  = "acs-sim-1.0.0"
	DefaultBusybox   = "/bin/busybox"
	DefaultOpenSSL   = "/usr/bin/openssl"
	DefaultLoadyIdle = 10 * time.Second
)

// Config describes one simulated device. Name, Dir and Profile are required.
type Config struct {
	// Name is the device name, shown in the boot banner and the default prompt
	// (e.g. "dut1"). Letters, digits, '-', '_' and '.' only.
	Name string
	// Dir holds everything of the device (see the package doc). It is created
	// if missing; an existing Dir keeps its dha/ and data/ storage.
	Dir string
	// Profile is the product profile (device.conf) the firmware builds its
	// CSR from. It is copied into <Dir>/etc at Start.
	Profile string
	// Prompt is PS1 of the device's shell; default "root@<Name>:/# ".
	Prompt string
	// Baud is the UART line rate. > 0: each direction carries at most Baud/10
	// bytes per second (8N1), and a port set to another speed by the harness
	// sees garbage, as on hardware. 0: unlimited, no speed check.
	Baud int
	// BootDelay is the time from reset or power-on to the first byte of the
	// boot banner; 0 means DefaultBootDelay, < 0 means no delay.
	BootDelay time.Duration
	// Firmware is the version of the built-in image slot A holds when the
	// device's fw/ storage is created (first Start on a Dir); a device
	// flashed since keeps its slots. The banner and fw_version show the
	// version of the slot that booted. Printable ASCII without spaces.
	Firmware string
	// Serial is the board's serial number, printed by the `serial_number` command (kept in
	// <Dir>/etc/serial). Empty: the board has none programmed and the command fails.
	// Printable ASCII without spaces.
	Serial string
	// BootloaderStrap is the initial state of the boot strap (a jumper):
	// while set, power-on and reset enter the boot ROM's command line
	// instead of booting the firmware. See Device.SetBootStrap.
	BootloaderStrap bool
	// Busybox and OpenSSL are the real tools the firmware is made of.
	Busybox string
	OpenSSL string
	// Seed seeds the garbage generator (noise, speed mismatch); 0 = random.
	Seed uint64
	// LoadyIdle is how long the boot ROM's YMODEM receiver waits without a
	// byte, once the transfer has begun, before it aborts; 0 means
	// DefaultLoadyIdle. Tests of the abort shorten it.
	LoadyIdle time.Duration
	// Logf, if set, receives one line per lifecycle event (boot, power,
	// errors). It is never called after Close returns.
	Logf func(format string, args ...any)
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, errors.New("config: Name is required")
	}
	for _, r := range c.Name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return c, fmt.Errorf("config: Name %q: only letters, digits, '-', '_' and '.' are allowed", c.Name)
		}
	}
	if c.Dir == "" {
		return c, errors.New("config: Dir is required")
	}
	if c.Profile == "" {
		return c, errors.New("config: Profile (device.conf) is required")
	}
	if c.Baud < 0 {
		return c, fmt.Errorf("config: Baud %d is negative", c.Baud)
	}
	if c.Prompt == "" {
		c.Prompt = "root@" + c.Name + ":/# "
	}
	switch {
	case c.BootDelay == 0:
		c.BootDelay = DefaultBootDelay
	case c.BootDelay < 0:
		c.BootDelay = 0
	}
	if c.Firmware == "" {
		c.Firmware = DefaultFirmware
	}
	if c.LoadyIdle <= 0 {
		c.LoadyIdle = DefaultLoadyIdle
	}
	for _, r := range c.Firmware {
		if r <= ' ' || r > '~' {
			return c, fmt.Errorf("config: Firmware %q: printable ASCII without spaces only", c.Firmware)
		}
	}
	for _, r := range c.Serial {
		if r <= ' ' || r > '~' {
			return c, fmt.Errorf("config: Serial %q: printable ASCII without spaces only", c.Serial)
		}
	}
	if c.Busybox == "" {
		c.Busybox = DefaultBusybox
	}
	if c.OpenSSL == "" {
		c.OpenSSL = DefaultOpenSSL
	}
	// The scripts bake these paths in; relative ones would break when the
	// shell changes directory.
	for _, p := range []*string{&c.Dir, &c.Profile, &c.Busybox, &c.OpenSSL} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		*p = abs
	}
	for _, tool := range []string{c.Busybox, c.OpenSSL} {
		st, err := os.Stat(tool)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return c, fmt.Errorf("config: %s is not an executable file", tool)
		}
	}
	return c, nil
}

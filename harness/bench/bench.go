package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Values the bench file accepts for its enumerations.
const (
	SignerSoftDAK = "softdak"
	SignerYubiKey = "yubikey"
	SignerAgent   = "agent"

	DefaultSlot = "9c" // PIV slot of the DAK (the FFS manufacturing guide: the CSR Signing Application's slot)

	FamilyACS = "acs"
	FamilyACK = "ack"

	ACKModeNative   = "native"
	ACKModeExternal = "external"

	MethodYModem = "ymodem"
	MethodDFU    = "dfu"

	EnterCommand = "command"
	EnterStrap   = "strap"

	PowerCommand = "command"
	PowerSim     = "sim"
	PowerUSBHub  = "usb-hub"

	LedgerSQLite   = "sqlite"
	LedgerPostgres = "postgres"
)

// Defaults applied by Load. Other optional fields stay at their zero value
// and the driver that uses them applies its own default.
const (
	DefaultOutput       = "hil-out" // next to the bench file
	DefaultExtensions   = "req_ext" // the FFS provisioning guide: -extensions req_ext
	DefaultValidityDays = 1825      // the FFS provisioning guide: -days 1825
	MaxValidityDays     = 36500
	DefaultBaud         = 115200
	DefaultDataBits     = 8
)

var (
	signerTypes = []string{SignerSoftDAK, SignerYubiKey, SignerAgent}
	// Signer types a later release adds; named so the error can say "not
	// yet" rather than "unknown".
	futureSignerTypes = []string{"yubihsm"}
	pivSlots          = []string{"9a", "9c", "9d", "9e", "82", "83", "84", "85", "86", "87", "88", "89", "8a", "8b",
		"8c", "8d", "8e", "8f", "90", "91", "92", "93", "94", "95"}
	attestationModes = []string{"required", "off"}
	families         = []string{FamilyACS, FamilyACK}
	futureFamilies   = []string{}
	ackModes         = []string{ACKModeNative, ACKModeExternal}
	flashMethods     = []string{MethodYModem, MethodDFU}
	enterModes       = []string{EnterCommand, EnterStrap}
	powerTypes       = []string{PowerCommand, PowerSim, PowerUSBHub}
	ledgerDrivers    = []string{LedgerSQLite, LedgerPostgres}
	parities         = []string{"none", "even", "odd", "mark", "space"}
	stopBits         = []string{"1", "1.5", "2"}
	acsCommands      = []string{"key_gen", "get_csr", "set_cert", "get_chain", "reboot", "factory_reset", "digest"}
)

// ACSCommands returns the keys an acs.commands mapping may override, in
// the order of the provisioning cycle.
func ACSCommands() []string { return slices.Clone(acsCommands) }

// Bench is a validated bench file.
type Bench struct {
	// Path is the absolute path of the file the bench was read from; empty
	// for a bench built in code. Marshal writes paths relative to it.
	Path    string
	Signer  SignerConfig
	Profile ProfileConfig
	// Output is the absolute directory for records and logs.
	Output string
	// Ledger says where the device-identity ledger lives; the zero value (no ledger key) is
	// SQLite at <Output>/ledger.db.
	Ledger LedgerConfig
	// Factory configures the factory outputs (labels, control logs); zero without a factory key.
	Factory FactoryConfig
	Targets []Target
}

// FactoryConfig is what the factory outputs say about the product: `hil labels`,
// `hil control-log`, `hil reconcile`.
type FactoryConfig struct {
	DeviceType string // Amazon's Device Type ID: the FFS control log's product, the Sidewalk SMSN
	Labels     LabelsConfig
	Sidewalk   SidewalkConfig
}

// LabelsConfig is the FFS product label.
type LabelsConfig struct {
	// Template is the 2D barcode payload with {serial}, {puk} and {pin} placeholders
	// ("ABV:IB01;SERNUM:{serial};PID:ebK3;PUK:{puk};PIN:{pin};"); "" when not set.
	Template   string
	ModuleSize int // printer dots per module; 0: DefaultModuleSize
	DPI        int // printer resolution; 0: DefaultDPI
}

// SidewalkConfig is the Sidewalk product.
type SidewalkConfig struct {
	APID  string // advertised product id
	Stage string // one of SidewalkStages; "": DefaultSidewalkStage
}

// Factory output defaults, applied by the commands that use them.
const (
	DefaultModuleSize    = 4   // dots: 0.34 mm at 300 DPI, a 36x36 symbol of 12.2 mm
	DefaultDPI           = 300 // a common label printer
	DefaultSidewalkStage = "production"
)

// SidewalkStages are the stages an SMSN is made for (the Sidewalk control log's label).
var SidewalkStages = []string{"production", "test", "preproduction"}

// LedgerConfig is the bench's ledger: a SQLite file, or a PostgreSQL database that several
// stations share.
type LedgerConfig struct {
	Driver string // LedgerSQLite or LedgerPostgres; "" (no ledger key) means LedgerSQLite
	Path   string // sqlite: absolute path of the file; "" means <Output>/ledger.db
	// postgres: a postgres:// URL or libpq key=value string. A password is better left to
	// PGPASSWORD or ~/.pgpass than written into the bench file.
	DSN string
}

// SignerConfig selects and configures the DAK. Paths are absolute.
type SignerConfig struct {
	Type          string // SignerSoftDAK, SignerYubiKey or SignerAgent
	Key           string // softdak: dak_private_key.pem
	Certificate   string // softdak: dak-certificate.pem
	Intermediates []string
	Roots         []string // trust anchors for verifying issued chains

	// yubikey
	Serial           uint32        // the YubiKey's serial number
	Reader           string        // only PC/SC readers whose name contains this (default: YubiKeys)
	Slot             string        // PIV slot, default DefaultSlot
	PINFile          string        // file holding the PIN alone (the ACK YubiKey guide)
	Attestation      string        // "required": the slot key must attest to the AttestationRoots
	AttestationRoots []string      // default: Yubico's PIV roots
	AllowLastRetry   bool          // verify the PIN even when only one retry remains
	ReplugTimeout    time.Duration // how long to wait for an unplugged key to return

	// softdak and yubikey: what lives with the key
	MaxSignatures int64  // the DAK's signature budget (the Sidewalk bulk provisioning guide); 0: unlimited, still counted
	StateDir      string // budget counter and audit log; default <output>/signer
	// Socket is where `hil signer serve` listens (softdak, yubikey) or what
	// clients dial (agent); default <StateDir>/agent.sock.
	Socket string
}

// ProfileConfig names the product profile and how to apply it.
type ProfileConfig struct {
	DeviceConf      string // absolute path of device.conf
	Extensions      string // section of device.conf; default "req_ext"
	DeviceTypeField string // DN field holding the device type id, if checked
	PerDeviceFields []string
	ValidityDays    int // default 1825
}

// Target is one device on the bench.
type Target struct {
	Name    string
	Family  string // FamilyACS or FamilyACK
	Console Console
	Power   *Power      // nil: no power control
	ACS     *ACSOptions // nil: driver defaults
	ACK     *ACKOptions // family ack only; nil: native mode with defaults
	Flash   *Flash      // nil: the target is not flashed
}

// Console says how to reach a target's console: exactly one of Port and
// USB is set.
type Console struct {
	Port     string
	USB      *USBID
	Baud     int    // default 115200
	DataBits int    // default 8
	Parity   string // "" means the driver's default (none)
	StopBits string // "1", "1.5", "2"; "" means the driver's default (1)
	Reopen   time.Duration
}

// USBID finds a serial adapter by USB identity. VID and PID are four
// lower-case hex digits.
type USBID struct {
	VID    string
	PID    string
	Serial string // optional; needed when several identical adapters are attached
}

// Power is a target's power controller.
type Power struct {
	Type string // PowerCommand, PowerSim or PowerUSBHub
	// usb-hub: the hub location ("1-1.4", as uhubctl -l names it) and port;
	// command: Port is the {port} of the templates (0: not used)
	Hub  string
	Port int
	// command: templates run with sh -c; {port} and {target} are substituted
	On, Off string
	Cycle   string // optional; off, OffTime, on if empty
	State   string // optional; its output is matched against OnPattern/OffPattern
	// OnPattern and OffPattern are regexps; defaults "on" and "off"
	OnPattern, OffPattern string
	Timeout               time.Duration // command: how long one command may run
	// sim: the simulator's power socket (<device dir>/power.sock)
	Socket string
	// OffTime is how long a cycle keeps the power off (default 2s)
	OffTime time.Duration
}

// ACKOptions configures the ACK module driver.
type ACKOptions struct {
	Mode            string // ACKModeNative (default) or ACKModeExternal
	Module          string // model the module must report; empty: any
	ProductConfig   string // absolute path of the product configuration file
	BootTimeout     time.Duration
	ExchangeTimeout time.Duration // one request's answer (before retransmission); default from the baud rate
	SlowTimeout     time.Duration // added for KEYGEN, CSR and COMMIT (key and signature work on the module)
	External        *ACKExternal  // required in external mode
}

// ACKExternal runs the vendor's provisioning tool.
type ACKExternal struct {
	// Command is the argv template; {port}, {product_config}, {pin_file},
	// {target} are substituted in each element.
	Command []string
	PINFile string   // absolute path; only the path is handed to the tool
	Success []string // regexps: at least one must match the tool's output
	Failure []string // regexps: none may match
	Timeout time.Duration
}

// Flash says how a target is flashed.
type Flash struct {
	Method    string // MethodYModem or MethodDFU
	FlashSize int64  // bytes the target's flash holds for one image; 0: not checked
	// ymodem: how to reach the bootloader and what to type there
	Enter          string // EnterCommand (default) or EnterStrap
	EnterCommand   string // shell command that restarts into the bootloader; default "reboot_bootloader"
	StrapOn        string // strap: commands (sh -c) that set and release the boot strap
	StrapOff       string
	Prompt         string // regexp of the bootloader prompt; default "=> $"
	LoadCommand    string // default "loady"
	BootCommand    string // default "boot"
	VersionCommand string // shell command printing the running version; default "fw_version"
	Timeout        time.Duration
	// dfu: the device in DFU mode (and in runtime mode, if it has one)
	DFU *FlashDFU
}

// FlashDFU finds a USB DFU device.
type FlashDFU struct {
	VID, PID   string // 4 lower-case hex digits
	Serial     string
	Alt        int
	Address    uint32 // DfuSe: start address (0: from the image or the memory map)
	MassErase  bool   // DfuSe: erase all of the flash before writing, not only the image's pages
	RuntimeVID string // the device before DETACH, if it differs
	RuntimePID string
}

// ACSOptions overrides the acs driver's defaults; zero values mean "use
// the default".
type ACSOptions struct {
	Prompt         string // regexp
	DataDir        string // absolute path on the device
	BootTimeout    time.Duration
	CommandTimeout time.Duration
	// Commands replaces the shell command for an operation; keys are
	// ACSCommands().
	Commands map[string]string
}

// ErrUnknownTarget is returned by Bench.Target for a name not in the bench.
var ErrUnknownTarget = errors.New("no such target")

// Load reads and validates the bench file at path.
// A file larger than MaxFileSize is refused without being read, with an
// Error matching ErrTooLarge that names the file and its size.
func Load(path string) (*Bench, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading bench file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("%d bytes; a bench file may hold at most %d (%d MiB)", fi.Size(), MaxFileSize, MaxFileSize>>20), Kind: ErrTooLarge}}
	}
	// One byte more than allowed is enough for Parse to refuse the file.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading bench file: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a bench file's contents. name is used in error messages
// and relative paths are resolved against filepath.Dir(name). Every problem
// found is reported in the returned Errors.
func Parse(name string, data []byte) (*Bench, error) {
	p, err := newParser(name)
	if err != nil {
		return nil, err
	}
	b := p.parse(data)
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	return b, nil
}

// Target returns the target called name, or an error matching
// ErrUnknownTarget that lists the names there are.
func (b *Bench) Target(name string) (*Target, error) {
	for i := range b.Targets {
		if b.Targets[i].Name == name {
			return &b.Targets[i], nil
		}
	}
	names := make([]string, len(b.Targets))
	for i, t := range b.Targets {
		names[i] = t.Name
	}
	where := "bench"
	if b.Path != "" {
		where = "bench " + b.Path
	}
	return nil, fmt.Errorf("%w %q in %s (targets: %s)", ErrUnknownTarget, name, where, strings.Join(names, ", "))
}

package acs

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Commands are the device-side command lines of the provisioning cycle. They live in one place
// because firmware builds differ: a bench file can override any of them (acs.commands).
// "{path}" in a command is replaced by the chain file's path on the device.
type Commands struct {
	KeyGen       string // make the DHA key in protected storage
	GetCSR       string // print the CSR (PEM)
	SetCert      string // store the chain file at {path}
	GetChain     string // print the stored chain (PEM)
	Reboot       string // soft reboot
	FactoryReset string // wipe user data (/data) and reboot
	Digest       string // print "<sha256 hex>  {path}"
}

// DefaultCommands are the ACS commands of the FFS provisioning guide plus busybox's reboot and sha256sum.
// factory_reset has no public ACS spelling; benches override it with their firmware's.
var DefaultCommands = Commands{
	KeyGen:       "ace hal dha key_gen",
	GetCSR:       "ace hal dha get_field 0x201",
	SetCert:      "ace hal dha set_cert {path}",
	GetChain:     "ace hal dha get_field 0x202",
	Reboot:       "reboot",
	FactoryReset: "factory_reset",
	Digest:       "sha256sum {path}",
}

// commandKeys maps the bench file's acs.commands keys to the fields they set.
var commandKeys = map[string]func(*Commands) *string{
	"key_gen":       func(c *Commands) *string { return &c.KeyGen },
	"get_csr":       func(c *Commands) *string { return &c.GetCSR },
	"set_cert":      func(c *Commands) *string { return &c.SetCert },
	"get_chain":     func(c *Commands) *string { return &c.GetChain },
	"reboot":        func(c *Commands) *string { return &c.Reboot },
	"factory_reset": func(c *Commands) *string { return &c.FactoryReset },
	"digest":        func(c *Commands) *string { return &c.Digest },
}

// Override returns c with the given bench-file overrides applied.
func (c Commands) Override(m map[string]string) (Commands, error) {
	for k, v := range m {
		field, ok := commandKeys[k]
		if !ok {
			keys := make([]string, 0, len(commandKeys))
			for k := range commandKeys {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return c, fmt.Errorf("acs.commands: unknown command %q (known: %s)", k, strings.Join(keys, ", "))
		}
		if strings.TrimSpace(v) == "" {
			return c, fmt.Errorf("acs.commands.%s: empty command", k)
		}
		*field(&c) = v
	}
	for _, k := range []string{"set_cert", "digest"} {
		if !strings.Contains(*commandKeys[k](&c), "{path}") {
			return c, fmt.Errorf("acs.commands.%s: must contain {path} (the chain file on the device)", k)
		}
	}
	return c, nil
}

func withPath(cmd, path string) string { return strings.ReplaceAll(cmd, "{path}", path) }

// Config is everything the driver needs to know about one ACS device's firmware.
type Config struct {
	Name           string         // target name; also names the chain file /data/<name>.pem
	Prompt         *regexp.Regexp // the shell prompt at the end of the output
	DataDir        string         // where the chain file is written before set_cert (the FFS provisioning guide: /data)
	Commands       Commands
	CommandTimeout time.Duration  // one command's round trip (key_gen on a slow secure element included)
	BootTimeout    time.Duration  // from reboot or factory reset to the first prompt
	RebootMarker   *regexp.Regexp // what the device prints when it goes down, proving the reboot started
	ChunkSize      int            // PEM bytes per printf command line when writing the chain file
	// NoKey matches what a failing get_csr prints when the device has no DHA key yet (ace: "no
	// DHA key"). Any other failure of get_csr stops the cycle: the device may have a key, and
	// key_gen would destroy it.
	NoKey *regexp.Regexp
}

// DefaultPrompt matches a root or user shell prompt: "...# " or "...$ ".
var DefaultPrompt = regexp.MustCompile(`[#$] $`)

// DefaultRebootMarker matches what Linux, busybox init and U-Boot print when a board goes down or comes up.
var DefaultRebootMarker = regexp.MustCompile(`(?i)restarting system|rebooting|reboot: |the system is going down|U-Boot|Linux version|Booting`)

// DefaultNoKey matches "no DHA key", "no key", "No such key".
var DefaultNoKey = regexp.MustCompile(`(?i)\bno\b[^\n]*\bkey\b`)

// WithDefaults fills the zero fields of c.
func (c Config) WithDefaults() Config {
	if c.Prompt == nil {
		c.Prompt = DefaultPrompt
	}
	if c.DataDir == "" {
		c.DataDir = "/data"
	}
	if c.Commands == (Commands{}) {
		c.Commands = DefaultCommands
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 15 * time.Second
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = 60 * time.Second
	}
	if c.RebootMarker == nil {
		c.RebootMarker = DefaultRebootMarker
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = 640
	}
	if c.NoKey == nil {
		c.NoKey = DefaultNoKey
	}
	return c
}

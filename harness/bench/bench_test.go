package bench_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"hilbench/harness/bench"
)

// benchDir makes a directory with the files a bench refers to.
func benchDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"k.pem", "c.pem", "root.pem", "inter.pem", "device.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// head is a valid signer and profile; targets start on line 8.
const head = `signer:
  type: softdak
  key: k.pem
  certificate: c.pem
profile:
  device_conf: device.conf
targets:
`

// dut1 is a valid target, lines 8-12 after head.
const dut1 = `  - name: dut1
    family: acs
    console:
      port: /dev/ttyUSB0
`

func parse(t *testing.T, dir, yaml string) (*bench.Bench, error) {
	t.Helper()
	return bench.Parse(filepath.Join(dir, "lab3.yaml"), []byte(yaml))
}

// messages returns the error's lines with the temp dir removed.
func messages(dir string, err error) []string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, dir+string(filepath.Separator))
	}
	return lines
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"baud not an integer", head + dut1 + "      baud: fast\n",
			[]string{`lab3.yaml:12: targets[0].console.baud: want an integer, got "fast"`}},
		{"baud quoted", head + dut1 + "      baud: \"9600\"\n",
			[]string{`lab3.yaml:12: targets[0].console.baud: want an integer, got "9600"`}},
		{"misspelt field", head + "  - name: dut1\n    family: acs\n    consle:\n      port: /dev/ttyUSB0\n",
			[]string{`lab3.yaml:10: targets[0]: unknown field "consle" (did you mean "console"?)`}},
		{"unknown field far from any", head + dut1 + "    colour: blue\n",
			[]string{`lab3.yaml:12: targets[0]: unknown field "colour" (known: name, family, console, power, acs, ack, flash)`}},
		{"missing name", head + "  - family: acs\n    console: {port: /dev/ttyS0}\n",
			[]string{`lab3.yaml:8: targets[0]: missing required field "name"`}},
		{"name without value", head + "  - name:\n    family: acs\n    console: {port: /dev/ttyS0}\n",
			[]string{`lab3.yaml:8: targets[0].name: missing value`}},
		{"bad name", head + "  - name: dut 1\n    family: acs\n    console: {port: /dev/ttyS0}\n",
			[]string{`lab3.yaml:8: targets[0].name: "dut 1": use only letters, digits, '_', '.' and '-' (it names output files)`}},
		{"duplicate names", head + dut1 + "  - name: dut1\n    family: acs\n    console: {port: /dev/ttyS1}\n",
			[]string{`lab3.yaml:12: targets[1].name: duplicate target name "dut1" (also targets[0])`}},
		{"same port twice", head + dut1 + "  - name: dut2\n    family: acs\n    console: {port: /dev/ttyUSB0}\n",
			[]string{`lab3.yaml:14: targets[1].console: port "/dev/ttyUSB0" is already the console of targets[0]`}},
		{"port and usb", head + dut1 + "      usb: {vid: \"0403\", pid: \"6001\"}\n",
			[]string{`lab3.yaml:12: targets[0].console: set either "port" or "usb", not both`}},
		{"neither port nor usb", head + "  - name: dut1\n    family: acs\n    console:\n      baud: 9600\n",
			[]string{`lab3.yaml:10: targets[0].console: missing "port" or "usb" (one of them says where the console is)`}},
		{"console missing", head + "  - name: dut1\n    family: acs\n",
			[]string{`lab3.yaml:8: targets[0]: missing required field "console"`}},
		{"console not a mapping", head + "  - name: dut1\n    family: acs\n    console: /dev/ttyUSB0\n",
			[]string{`lab3.yaml:10: targets[0].console: want a mapping, got "/dev/ttyUSB0"`}},
		{"bad usb ids", head + "  - name: dut1\n    family: acs\n    console:\n      usb: {vid: \"04031\", pid: xyz1}\n",
			[]string{
				`lab3.yaml:11: targets[0].console.usb.vid: want 4 hex digits like "0403", got "04031"`,
				`lab3.yaml:11: targets[0].console.usb.pid: want 4 hex digits like "0403", got "xyz1"`,
			}},
		{"usb without pid", head + "  - name: dut1\n    family: acs\n    console:\n      usb: {vid: \"0403\"}\n",
			[]string{`lab3.yaml:11: targets[0].console.usb: missing required field "pid"`}},
		{"unknown family", head + "  - name: dut1\n    family: esp32\n    console: {port: /dev/ttyS0}\n",
			[]string{`lab3.yaml:9: targets[0].family: unknown family "esp32" (supported: acs, ack)`}},
		{"acs options on an ack target", head + "  - name: dut1\n    family: ack\n    console: {port: /dev/ttyS0}\n    acs: {prompt: x}\n",
			[]string{`lab3.yaml:11: targets[0].acs: only valid for family acs`}},
		{"ack external without its section", head + "  - name: dut1\n    family: ack\n    console: {port: /dev/ttyS0}\n    ack: {mode: external}\n",
			[]string{`lab3.yaml:11: targets[0].ack: mode external needs an "external" section (the vendor tool's command)`}},
		{"ack external without success patterns", head + "  - name: dut1\n    family: ack\n    console: {port: /dev/ttyS0}\n    ack:\n      mode: external\n      external: {command: [tool, \"{port}\"], failure: ['(']}\n",
			[]string{
				"lab3.yaml:13: targets[0].ack.external.failure[0]: not a valid regular expression: error parsing regexp: missing closing ): `(`",
				`lab3.yaml:13: targets[0].ack.external: missing "success": the patterns in the tool's output that mean it worked (an exit status alone is not trusted)`,
			}},
		{"flash problems", head + dut1 + "    flash: {method: serial, flash_size: 4Q, enter: strap, dfu: {vid: 0483, pid: df11}}\n",
			[]string{
				`lab3.yaml:12: targets[0].flash.method: unknown flash method "serial" (supported: ymodem, dfu)`,
				`lab3.yaml:12: targets[0].flash.flash_size: want a size like 1048576, 512K or 4M, got "4Q"`,
				`lab3.yaml:12: targets[0].flash: enter: strap needs strap_on and strap_off (the commands that set and release the boot strap)`,
				`lab3.yaml:12: targets[0].flash.dfu: only valid with method dfu`,
			}},
		{"power fields of another type", head + dut1 + "    power: {type: sim, socket: s, on: 'relay on', hub: 1-1}\n",
			[]string{
				`lab3.yaml:12: targets[0].power.hub: only valid for power type usb-hub`,
				`lab3.yaml:12: targets[0].power.on: only valid for power type command`,
			}},
		{"data bits", head + dut1 + "      data_bits: 9\n",
			[]string{`lab3.yaml:12: targets[0].console.data_bits: 9 is out of range 5..8`}},
		{"parity", head + dut1 + "      parity: nine\n",
			[]string{`lab3.yaml:12: targets[0].console.parity: "nine" is not one of none, even, odd, mark, space`}},
		{"stop bits", head + dut1 + "      stop_bits: 3\n",
			[]string{`lab3.yaml:12: targets[0].console.stop_bits: "3" is not one of 1, 1.5, 2`}},
		{"bad duration", head + dut1 + "      reopen: ten seconds\n",
			[]string{`lab3.yaml:12: targets[0].console.reopen: want a duration like "10s" or "1m30s", got "ten seconds"`}},
		{"duration without unit", head + dut1 + "    acs:\n      boot_timeout: 60\n",
			[]string{`lab3.yaml:13: targets[0].acs.boot_timeout: want a duration like "10s" or "1m30s", got "60"`}},
		{"negative duration", head + dut1 + "    acs:\n      command_timeout: -1s\n",
			[]string{`lab3.yaml:13: targets[0].acs.command_timeout: must be positive, got "-1s"`}},
		{"bad regexp", head + dut1 + "    acs:\n      prompt: '[#$ $'\n",
			[]string{"lab3.yaml:13: targets[0].acs.prompt: not a valid regular expression: error parsing regexp: missing closing ]: `[#$ $`"}},
		{"bad data dir", head + dut1 + "    acs:\n      data_dir: data; rm -rf /\n",
			[]string{`lab3.yaml:13: targets[0].acs.data_dir: want an absolute device path of letters, digits and _ . / -, got "data; rm -rf /"`}},
		{"unknown command", head + dut1 + "    acs:\n      commands:\n        get_cs: ace hal dha get_field 0x201\n",
			[]string{`lab3.yaml:14: targets[0].acs.commands: unknown field "get_cs" (did you mean "get_csr"?)`}},
		{"empty command", head + dut1 + "    acs:\n      commands:\n        reboot: \"\"\n",
			[]string{`lab3.yaml:14: targets[0].acs.commands.reboot: must not be empty`}},
		{"power type", head + dut1 + "    power:\n      type: relay\n",
			[]string{`lab3.yaml:13: targets[0].power.type: unknown power type "relay" (supported: command, sim, usb-hub)`}},
		{"power command incomplete", head + dut1 + "    power:\n      type: command\n      on: relay 1 on\n      hub: 1-1\n",
			[]string{
				`lab3.yaml:12: targets[0].power: missing required field "off"`,
				`lab3.yaml:15: targets[0].power.hub: only valid for power type usb-hub`,
			}},
		{"usb hub port", head + dut1 + "    power:\n      type: usb-hub\n      hub: 1-1\n      port: 0\n",
			[]string{`lab3.yaml:15: targets[0].power.port: 0 is out of range 1..255`}},
		{"usb hub missing port", head + dut1 + "    power: {type: usb-hub, hub: 1-1}\n",
			[]string{`lab3.yaml:12: targets[0].power: missing required field "port"`}},
		{"duplicate key", head + dut1 + "      port: /dev/ttyUSB1\n",
			[]string{`lab3.yaml:12: targets[0].console: field "port" given twice (first on line 11)`}},
		{"missing files", "signer:\n  type: softdak\n  key: nokey.pem\n  certificate: nocert.pem\n  roots: [root.pem, noroot.pem]\n  intermediates: [adir]\nprofile:\n  device_conf: nodevice.conf\ntargets:\n" + dut1,
			[]string{
				`lab3.yaml:3: signer.key: file "nokey.pem" (DIR/nokey.pem) does not exist`,
				`lab3.yaml:4: signer.certificate: file "nocert.pem" (DIR/nocert.pem) does not exist`,
				`lab3.yaml:5: signer.roots[1]: file "noroot.pem" (DIR/noroot.pem) does not exist`,
				`lab3.yaml:6: signer.intermediates[0]: "adir" (DIR/adir) is a directory, want a file`,
				`lab3.yaml:8: profile.device_conf: file "nodevice.conf" (DIR/nodevice.conf) does not exist`,
			}},
		{"signer type not yet", "signer:\n  type: yubihsm\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:2: signer.type: signer type "yubihsm" is not supported yet (supported: softdak, yubikey, agent)`}},
		{"signer type unknown", "signer:\n  type: hsm\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:2: signer.type: unknown signer type "hsm" (supported: softdak, yubikey, agent)`}},
		{"yubikey without serial and pin file", "signer:\n  type: yubikey\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:1: signer: missing required field "serial"`, `lab3.yaml:1: signer: missing required field "pin_file"`}},
		{"yubikey bad fields", "signer:\n  type: yubikey\n  serial: twelve\n  slot: 9b\n  pin_file: k.pem\n  allow_last_retry: maybe\n  key: k.pem\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:3: signer.serial: want an integer, got "twelve"`, `lab3.yaml:4: signer.slot: "9b" is not one of 9a, 9c, 9d, 9e, 82, 83, 84, 85, 86, 87, 88, 89, 8a, 8b, 8c, 8d, 8e, 8f, 90, 91, 92, 93, 94, 95`,
				`lab3.yaml:6: signer.allow_last_retry: want true or false, got "maybe"`, `lab3.yaml:7: signer.key: only for signer type softdak, not yubikey`}},
		{"agent without socket", "signer:\n  type: agent\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:1: signer: missing required field "socket"`}},
		{"softdak without key", "signer:\n  type: softdak\n  certificate: c.pem\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:1: signer: missing required field "key"`}},
		{"validity", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofile:\n  device_conf: device.conf\n  validity_days: 40000\ntargets:\n" + dut1,
			[]string{`lab3.yaml:4: profile.validity_days: 40000 is out of range 1..36500`}},
		{"validity zero", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofile:\n  device_conf: device.conf\n  validity_days: 0\ntargets:\n" + dut1,
			[]string{`lab3.yaml:4: profile.validity_days: 0 is out of range 1..36500`}},
		{"per device fields", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofile:\n  device_conf: device.conf\n  per_device_fields: CN\ntargets:\n" + dut1,
			[]string{`lab3.yaml:4: profile.per_device_fields: want a list, got "CN"`}},
		{"per device fields twice", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofile:\n  device_conf: device.conf\n  per_device_fields: [CN, SN, CN]\ntargets:\n" + dut1,
			[]string{`lab3.yaml:4: profile.per_device_fields[2]: "CN" is listed twice (also per_device_fields[0])`}},
		{"missing sections", "output: out\n",
			[]string{
				`lab3.yaml:1: missing required field "signer"`,
				`lab3.yaml:1: missing required field "profile"`,
				`lab3.yaml:1: missing required field "targets"`,
			}},
		{"misspelt section", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofiel:\n  device_conf: device.conf\ntargets:\n" + dut1,
			[]string{`lab3.yaml:2: unknown field "profiel" (did you mean "profile"?)`}},
		{"no targets", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofile: {device_conf: device.conf}\ntargets: []\n",
			[]string{`lab3.yaml:3: targets: want at least one target`}},
		{"targets a mapping", "signer: {type: softdak, key: k.pem, certificate: c.pem}\nprofile: {device_conf: device.conf}\ntargets:\n  dut1: {}\n",
			[]string{`lab3.yaml:4: targets: want a list of targets, got a mapping`}},
		{"top level list", "- signer\n",
			[]string{`lab3.yaml:1: want a mapping with signer, profile and targets at the top level, got a list`}},
		{"empty file", "", []string{`lab3.yaml: empty bench file`}},
		{"comments only", "# nothing yet\n", []string{`lab3.yaml: empty bench file`}},
		{"syntax error", head + dut1 + "      baud: [115200\n",
			[]string{`lab3.yaml:12: did not find expected ',' or ']'`}},
		{"tab indentation", head + dut1 + "\t  baud: 9600\n",
			[]string{`lab3.yaml:12: found a tab character that violates indentation (YAML does not allow tabs for indentation)`}},
		{"two documents", head + dut1 + "---\nsigner: {}\n",
			[]string{`lab3.yaml:12: more than one YAML document; a bench file holds one`}},
		{"bad indentation", head + dut1 + "      baud: 9600\n     parity: odd\n",
			[]string{`lab3.yaml:13: did not find expected key (check the indentation of this line)`}},
		{"every problem at once", head + "  - name: dut1\n    family: acs\n    console:\n      port: /dev/ttyUSB0\n      baud: fast\n    acs: {prompt: '('}\n  - family: ack\n    console: {}\n",
			[]string{
				`lab3.yaml:12: targets[0].console.baud: want an integer, got "fast"`,
				"lab3.yaml:13: targets[0].acs.prompt: not a valid regular expression: error parsing regexp: missing closing ): `(`",
				`lab3.yaml:14: targets[1]: missing required field "name"`,
				`lab3.yaml:15: targets[1].console: missing "port" or "usb" (one of them says where the console is)`,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := benchDir(t)
			b, err := parse(t, dir, tc.yaml)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", b)
			}
			if b != nil {
				t.Error("Parse returned a bench with an error")
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "DIR", dir))
			}
			if got := messages(dir, err); !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestErrorKinds(t *testing.T) {
	dir := benchDir(t)
	_, err := parse(t, dir, "signer:\n  type: softdak\n  key: nokey.pem\n  certificate: c.pem\nprofile:\n  device_conf: device.conf\n  extra: 1\ntargets:\n  - family: acs\n    console: {port: /dev/ttyS0, baud: x}\n")
	for _, kind := range []error{bench.ErrMissingFile, fs.ErrNotExist, bench.ErrUnknownField, bench.ErrMissingField, bench.ErrType} {
		if !errors.Is(err, kind) {
			t.Errorf("errors.Is(err, %v) = false", kind)
		}
	}
	if errors.Is(err, bench.ErrDuplicate) {
		t.Error("errors.Is(err, ErrDuplicate) = true for a bench without duplicates")
	}
	var list bench.Errors
	if !errors.As(err, &list) || len(list) != 4 {
		t.Fatalf("want 4 problems in bench.Errors, got %v", err)
	}
	var e *bench.Error
	if !errors.As(err, &e) || e.Line != 3 || e.Field != "signer.key" || !strings.HasSuffix(e.File, "lab3.yaml") {
		t.Errorf("first *Error = %+v", e)
	}
}

func TestParseValid(t *testing.T) {
	dir := benchDir(t)
	// Anchors, aliases and merges are plain YAML; benches with many
	// identical boards use them.
	yaml := `signer:
  type: softdak
  key: k.pem
  certificate: ` + filepath.Join(dir, "c.pem") + `
  intermediates: [inter.pem]
  roots: [root.pem]
profile:
  device_conf: device.conf
  per_device_fields: [CN]
  extensions: v3_req
output: /tmp/elsewhere
defaults: &board
  family: acs
  power: {type: sim, socket: sim/dut.sock}
targets:
  - <<: *board
    name: a
    console: {usb: {vid: 0403, pid: 0x60A1, serial: "007"}, parity: even, stop_bits: 1.5, reopen: 5s}
  - <<: *board
    name: b
    family: acs
    console: {port: COM3, baud: 9600}
    acs:
      prompt: '\$ $'
      data_dir: /data/hil
      commands: {reboot: "reboot -f"}
`
	// "defaults" is not a bench field: the merge source has to live
	// somewhere, and an unknown field is still an error.
	_, err := parse(t, dir, yaml)
	if err == nil || !strings.Contains(err.Error(), `lab3.yaml:12: unknown field "defaults"`) {
		t.Fatalf("want an unknown field error for defaults, got %v", err)
	}
	yaml = strings.Replace(yaml, "defaults: &board\n  family: acs\n  power: {type: sim, socket: sim/dut.sock}\ntargets:\n  - <<: *board\n",
		"targets:\n  - &board\n    family: acs\n    power: {type: sim, socket: sim/dut.sock}\n", 1)
	yaml = strings.Replace(yaml, "  - <<: *board\n    name: b\n    family: acs\n", "  - <<: *board\n    name: b\n", 1)
	b, err := parse(t, dir, yaml)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, yaml)
	}
	want := &bench.Bench{
		Path: filepath.Join(dir, "lab3.yaml"),
		Signer: bench.SignerConfig{
			Type: "softdak", Key: filepath.Join(dir, "k.pem"), Certificate: filepath.Join(dir, "c.pem"),
			Intermediates: []string{filepath.Join(dir, "inter.pem")}, Roots: []string{filepath.Join(dir, "root.pem")},
		},
		Profile: bench.ProfileConfig{DeviceConf: filepath.Join(dir, "device.conf"), Extensions: "v3_req",
			PerDeviceFields: []string{"CN"}, ValidityDays: 1825},
		Output: "/tmp/elsewhere",
		Targets: []bench.Target{
			{Name: "a", Family: "acs", Power: &bench.Power{Type: "sim", Socket: filepath.Join(dir, "sim/dut.sock")},
				Console: bench.Console{USB: &bench.USBID{VID: "0403", PID: "60a1", Serial: "007"}, Baud: 115200, DataBits: 8,
					Parity: "even", StopBits: "1.5", Reopen: 5 * time.Second}},
			{Name: "b", Family: "acs", Power: &bench.Power{Type: "sim", Socket: filepath.Join(dir, "sim/dut.sock")},
				Console: bench.Console{Port: "COM3", Baud: 9600, DataBits: 8},
				ACS:     &bench.ACSOptions{Prompt: `\$ $`, DataDir: "/data/hil", Commands: map[string]string{"reboot": "reboot -f"}}},
		},
	}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", b, want)
	}
	if _, err := regexp.Compile(b.Targets[1].ACS.Prompt); err != nil {
		t.Error(err)
	}
}

func TestDefaults(t *testing.T) {
	dir := benchDir(t)
	b, err := parse(t, dir, head+dut1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Output != filepath.Join(dir, "hil-out") || b.Profile.Extensions != "req_ext" || b.Profile.ValidityDays != 1825 {
		t.Errorf("bench defaults: output %q, extensions %q, validity %d", b.Output, b.Profile.Extensions, b.Profile.ValidityDays)
	}
	c := b.Targets[0].Console
	if c.Baud != 115200 || c.DataBits != 8 || c.Parity != "" || c.StopBits != "" || c.Reopen != 0 {
		t.Errorf("console defaults: %+v", c)
	}
	if b.Targets[0].Power != nil || b.Targets[0].ACS != nil {
		t.Error("absent power/acs must stay nil")
	}
}

func TestLoadFixture(t *testing.T) {
	b, err := bench.Load("../../fixtures/benches/example.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	abs, _ := filepath.Abs("../../fixtures/profiles/device.conf")
	if b.Profile.DeviceConf != abs || !filepath.IsAbs(b.Signer.Key) || len(b.Signer.Roots) != 1 {
		t.Errorf("paths not resolved: %+v %+v", b.Profile, b.Signer)
	}
	dut2, err := b.Target("dut2")
	if err != nil {
		t.Fatal(err)
	}
	if dut2.Console.USB == nil || dut2.Console.USB.Serial != "A10K3XYZ" || dut2.Power.Type != bench.PowerUSBHub || dut2.Power.Port != 2 {
		t.Errorf("dut2 = %+v", dut2)
	}
	dut1, _ := b.Target("dut1")
	if dut1.ACS.BootTimeout != time.Minute || dut1.ACS.Commands["get_csr"] != "ace hal dha get_field 0x201" {
		t.Errorf("dut1.ACS = %+v", dut1.ACS)
	}
	if dut1.Flash == nil || dut1.Flash.Method != bench.MethodYModem || dut1.Flash.FlashSize != 16<<20 || dut1.Power.Port != 3 {
		t.Errorf("dut1 flash/power = %+v %+v", dut1.Flash, dut1.Power)
	}
	m2, _ := b.Target("module2")
	if m2.ACK == nil || m2.ACK.External == nil || !filepath.IsAbs(m2.ACK.External.PINFile) || m2.ACK.External.Timeout != 2*time.Minute {
		t.Errorf("module2.ACK = %+v", m2.ACK)
	}
	_, err = b.Target("dut3")
	if !errors.Is(err, bench.ErrUnknownTarget) || !strings.Contains(err.Error(), "(targets: dut1, dut2, module1, module2)") {
		t.Errorf("Target(dut3) = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := bench.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	orig, err := bench.Load("../../fixtures/benches/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Elsewhere: referenced files stay where they are, written absolute.
	out := filepath.Join(t.TempDir(), "copy.yaml")
	if err := orig.Write(out); err != nil {
		t.Fatalf("Write: %v", err)
	}
	again, err := bench.Load(out)
	if err != nil {
		t.Fatalf("Load after Write: %v", err)
	}
	if again.Path != out {
		t.Errorf("Path = %q, want %q", again.Path, out)
	}
	again.Path = orig.Path
	if !reflect.DeepEqual(again, orig) {
		t.Errorf("round trip changed the bench:\n%+v\nwant\n%+v", again, orig)
	}

	// Beside its files: paths are written relative, so the directory can move.
	dir := benchDir(t)
	b, err := parse(t, dir, head+dut1)
	if err != nil {
		t.Fatal(err)
	}
	b.Targets = append(b.Targets, bench.Target{Name: "sim1", Family: "acs",
		Console: bench.Console{Port: "/dev/pts/7", Baud: 115200, DataBits: 8, Reopen: 1500 * time.Millisecond},
		Power:   &bench.Power{Type: bench.PowerCommand, On: "on", Off: "off"},
		ACS:     &bench.ACSOptions{}})
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"key: k.pem", "device_conf: device.conf", "output: hil-out", "reopen: 1.5s", "acs: {}"} {
		if !strings.Contains(string(data), s) {
			t.Errorf("Marshal output lacks %q:\n%s", s, data)
		}
	}
	moved := t.TempDir()
	for _, f := range []string{"k.pem", "c.pem", "device.conf"} {
		if err := os.Rename(filepath.Join(dir, f), filepath.Join(moved, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(moved, "lab3.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := bench.Load(filepath.Join(moved, "lab3.yaml"))
	if err != nil {
		t.Fatalf("Load of moved bench: %v", err)
	}
	if back.Signer.Key != filepath.Join(moved, "k.pem") || !reflect.DeepEqual(back.Targets, b.Targets) {
		t.Errorf("moved bench = %+v", back)
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	dir := benchDir(t)
	b, err := parse(t, dir, head+dut1)
	if err != nil {
		t.Fatal(err)
	}
	b.Signer.Key = filepath.Join(dir, "gone.pem")
	b.Targets = append(b.Targets, b.Targets[0]) // duplicate name and port
	path := filepath.Join(dir, "out.yaml")
	err = b.Write(path)
	if !errors.Is(err, bench.ErrMissingFile) || !errors.Is(err, bench.ErrDuplicate) {
		t.Fatalf("Write = %v, want missing file and duplicate errors", err)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, fs.ErrNotExist) {
		t.Error("Write wrote an invalid bench")
	}
}

// TestSyntaxErrorLines checks that a syntax error names the line the
// mistake is on, not the start of the block yaml.v3 was parsing.
func TestSyntaxErrorLines(t *testing.T) {
	dir := benchDir(t)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"outdented key", "a:\n  b: 1\n  c: 2\n d: 3\n", "lab3.yaml:4: did not find expected key (check the indentation of this line)"},
		{"list item in a mapping", "a:\n  b: 1\n  - c\n", "lab3.yaml:3: did not find expected key (check the indentation of this line)"},
		{"key in a list", "a:\n  - 1\n  x: 2\n", "lab3.yaml:3: did not find expected '-' indicator (check the indentation of this line)"},
		{"deep indentation slip", head + dut1 + "      baud: 9600\n      parity: odd\n     stop_bits: 1\n", "lab3.yaml:14: did not find expected key (check the indentation of this line)"},
		{"missing colon", "a:\n  b: 1\n  c\n  d: 2\n", "lab3.yaml:3: could not find expected ':'"},
		{"unclosed quote", "a: 1\nb: \"xx\nc: 2\n", "lab3.yaml:2: found unexpected end of stream"},
		{"unclosed flow after a good one", "a: [1,\n  2]\nb: 2\nc: {x: 1\nd: 3\n", "lab3.yaml:4: did not find expected ',' or '}'"},
		{"unknown anchor", "a: 1\nb: *nope\n", "lab3.yaml:2: unknown anchor 'nope' referenced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, dir, tc.yaml)
			if err == nil || !errors.Is(err, bench.ErrSyntax) {
				t.Fatalf("Parse = %v, want a syntax error", err)
			}
			if got := messages(dir, err); len(got) != 1 || got[0] != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestYubiKeySignerRoundTrip(t *testing.T) {
	dir := benchDir(t)
	src := "signer:\n  type: yubikey\n  serial: 4000123\n  reader: Virtual PCD\n  pin_file: k.pem\n  attestation: required\n" +
		"  attestation_roots: [c.pem]\n  allow_last_retry: true\n  replug_timeout: 20s\n  max_signatures: 100000\n" +
		"  state_dir: state\n  socket: /run/hil/signer.sock\nprofile:\n  device_conf: device.conf\ntargets:\n" + dut1
	b, err := parse(t, dir, src)
	if err != nil {
		t.Fatal(err)
	}
	want := bench.SignerConfig{Type: "yubikey", Serial: 4000123, Reader: "Virtual PCD", Slot: "9c", PINFile: filepath.Join(dir, "k.pem"),
		Attestation: "required", AttestationRoots: []string{filepath.Join(dir, "c.pem")}, AllowLastRetry: true,
		ReplugTimeout: 20 * time.Second, MaxSignatures: 100000, StateDir: filepath.Join(dir, "state"), Socket: "/run/hil/signer.sock"}
	if !reflect.DeepEqual(b.Signer, want) {
		t.Fatalf("signer = %+v\nwant %+v", b.Signer, want)
	}
	out := filepath.Join(dir, "again.yaml")
	if err := b.Write(out); err != nil {
		t.Fatal(err)
	}
	again, err := bench.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Signer, want) {
		t.Errorf("after Write and Load: %+v", again.Signer)
	}
}

func TestParseACKFlashAndPower(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k.pem", "c.pem", "device.conf", "product.conf", "pin"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := `signer: {type: softdak, key: k.pem, certificate: c.pem}
profile: {device_conf: device.conf}
targets:
  - name: mod1
    family: ack
    console: {port: /dev/ttyUSB1}
    power: {type: command, on: "relay {port} on", off: "relay {port} off", state: "relay {port}", port: 3, on_pattern: "ON", off_time: 500ms, timeout: 5s}
    ack:
      mode: external
      module: MW1
      product_config: product.conf
      boot_timeout: 20s
      external:
        command: [module-utility, provision, --port, "{port}", --config, "{product_config}", --pin-file, "{pin_file}"]
        pin_file: pin
        success: ["Provisioning complete"]
        failure: ["(?i)error", "FAIL"]
        timeout: 2m
  - name: dut1
    family: acs
    console: {port: /dev/ttyUSB0}
    flash: {method: ymodem, flash_size: 4M, enter_command: "reboot -b", prompt: "=> $", timeout: 30s}
  - name: stm
    family: acs
    console: {port: /dev/ttyACM0}
    flash:
      method: dfu
      flash_size: 512K
      dfu: {vid: "0483", pid: df11, alt: 0, address: "0x08000000", mass_erase: true, runtime_vid: "1209", runtime_pid: "0001"}
`
	b, err := parse(t, dir, yaml)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wantACK := &bench.ACKOptions{Mode: bench.ACKModeExternal, Module: "MW1", ProductConfig: filepath.Join(dir, "product.conf"),
		BootTimeout: 20 * time.Second, External: &bench.ACKExternal{
			Command: []string{"module-utility", "provision", "--port", "{port}", "--config", "{product_config}", "--pin-file", "{pin_file}"},
			PINFile: filepath.Join(dir, "pin"), Success: []string{"Provisioning complete"}, Failure: []string{"(?i)error", "FAIL"},
			Timeout: 2 * time.Minute}}
	if !reflect.DeepEqual(b.Targets[0].ACK, wantACK) {
		t.Errorf("ack = %+v\nwant %+v", b.Targets[0].ACK, wantACK)
	}
	wantPower := &bench.Power{Type: "command", On: "relay {port} on", Off: "relay {port} off", State: "relay {port}", Port: 3,
		OnPattern: "ON", OffTime: 500 * time.Millisecond, Timeout: 5 * time.Second}
	if !reflect.DeepEqual(b.Targets[0].Power, wantPower) {
		t.Errorf("power = %+v\nwant %+v", b.Targets[0].Power, wantPower)
	}
	wantY := &bench.Flash{Method: "ymodem", FlashSize: 4 << 20, EnterCommand: "reboot -b", Prompt: "=> $", Timeout: 30 * time.Second}
	if !reflect.DeepEqual(b.Targets[1].Flash, wantY) {
		t.Errorf("ymodem flash = %+v\nwant %+v", b.Targets[1].Flash, wantY)
	}
	wantD := &bench.Flash{Method: "dfu", FlashSize: 512 << 10, DFU: &bench.FlashDFU{VID: "0483", PID: "df11", Address: 0x08000000, MassErase: true,
		RuntimeVID: "1209", RuntimePID: "0001"}}
	if !reflect.DeepEqual(b.Targets[2].Flash, wantD) {
		t.Errorf("dfu flash = %+v / %+v\nwant %+v / %+v", b.Targets[2].Flash, b.Targets[2].Flash.DFU, wantD, wantD.DFU)
	}
	// What Marshal writes loads back to the same bench.
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := bench.Parse(b.Path, out)
	if err != nil {
		t.Fatalf("marshalled bench does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, b) {
		t.Errorf("round trip differs:\n%s", out)
	}
}

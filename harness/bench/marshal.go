package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The on-disk shape, for encoding only: Parse walks nodes itself.
type fileBench struct {
	Signer  fileSigner   `yaml:"signer"`
	Profile fileProfile  `yaml:"profile"`
	Output  string       `yaml:"output,omitempty"`
	Ledger  *fileLedger  `yaml:"ledger,omitempty"`
	Factory *fileFactory `yaml:"factory,omitempty"`
	Targets []fileTarget `yaml:"targets"`
}

type fileFactory struct {
	DeviceType string        `yaml:"device_type,omitempty"`
	Labels     *fileLabels   `yaml:"labels,omitempty"`
	Sidewalk   *fileSidewalk `yaml:"sidewalk,omitempty"`
}

type fileLabels struct {
	Template   string `yaml:"template"`
	ModuleSize int    `yaml:"module_size,omitempty"`
	DPI        int    `yaml:"dpi,omitempty"`
}

type fileSidewalk struct {
	APID  string `yaml:"apid"`
	Stage string `yaml:"stage,omitempty"`
}

type fileLedger struct {
	Driver string `yaml:"driver"`
	Path   string `yaml:"path,omitempty"`
	DSN    string `yaml:"dsn,omitempty"`
}

type fileSigner struct {
	Type          string   `yaml:"type"`
	Key           string   `yaml:"key,omitempty"`
	Certificate   string   `yaml:"certificate,omitempty"`
	Intermediates []string `yaml:"intermediates,omitempty"`
	Roots         []string `yaml:"roots,omitempty"`

	Serial           uint32   `yaml:"serial,omitempty"`
	Reader           string   `yaml:"reader,omitempty"`
	Slot             string   `yaml:"slot,omitempty"`
	PINFile          string   `yaml:"pin_file,omitempty"`
	Attestation      string   `yaml:"attestation,omitempty"`
	AttestationRoots []string `yaml:"attestation_roots,omitempty"`
	AllowLastRetry   bool     `yaml:"allow_last_retry,omitempty"`
	ReplugTimeout    string   `yaml:"replug_timeout,omitempty"`
	MaxSignatures    int64    `yaml:"max_signatures,omitempty"`
	StateDir         string   `yaml:"state_dir,omitempty"`
	Socket           string   `yaml:"socket,omitempty"`
}

type fileProfile struct {
	DeviceConf      string   `yaml:"device_conf"`
	Extensions      string   `yaml:"extensions,omitempty"`
	DeviceTypeField string   `yaml:"device_type_field,omitempty"`
	PerDeviceFields []string `yaml:"per_device_fields,omitempty"`
	ValidityDays    int      `yaml:"validity_days,omitempty"`
}

type fileTarget struct {
	Name    string      `yaml:"name"`
	Family  string      `yaml:"family"`
	Console fileConsole `yaml:"console"`
	Power   *filePower  `yaml:"power,omitempty"`
	ACS     *fileACS    `yaml:"acs,omitempty"`
	ACK     *fileACK    `yaml:"ack,omitempty"`
	Flash   *fileFlash  `yaml:"flash,omitempty"`
}

type fileConsole struct {
	Port     string   `yaml:"port,omitempty"`
	USB      *fileUSB `yaml:"usb,omitempty"`
	Baud     int      `yaml:"baud,omitempty"`
	DataBits int      `yaml:"data_bits,omitempty"`
	Parity   string   `yaml:"parity,omitempty"`
	StopBits string   `yaml:"stop_bits,omitempty"`
	Reopen   string   `yaml:"reopen,omitempty"`
}

type fileUSB struct {
	VID    string `yaml:"vid"`
	PID    string `yaml:"pid"`
	Serial string `yaml:"serial,omitempty"`
}

type filePower struct {
	Type       string `yaml:"type"`
	Hub        string `yaml:"hub,omitempty"`
	Port       int    `yaml:"port,omitempty"`
	On         string `yaml:"on,omitempty"`
	Off        string `yaml:"off,omitempty"`
	Cycle      string `yaml:"cycle,omitempty"`
	State      string `yaml:"state,omitempty"`
	OnPattern  string `yaml:"on_pattern,omitempty"`
	OffPattern string `yaml:"off_pattern,omitempty"`
	Timeout    string `yaml:"timeout,omitempty"`
	Socket     string `yaml:"socket,omitempty"`
	OffTime    string `yaml:"off_time,omitempty"`
}

type fileACK struct {
	Mode            string           `yaml:"mode,omitempty"`
	Module          string           `yaml:"module,omitempty"`
	ProductConfig   string           `yaml:"product_config,omitempty"`
	BootTimeout     string           `yaml:"boot_timeout,omitempty"`
	ExchangeTimeout string           `yaml:"exchange_timeout,omitempty"`
	SlowTimeout     string           `yaml:"slow_timeout,omitempty"`
	External        *fileACKExternal `yaml:"external,omitempty"`
}

type fileACKExternal struct {
	Command []string `yaml:"command"`
	PINFile string   `yaml:"pin_file,omitempty"`
	Success []string `yaml:"success"`
	Failure []string `yaml:"failure,omitempty"`
	Timeout string   `yaml:"timeout,omitempty"`
}

type fileFlash struct {
	Method         string        `yaml:"method"`
	FlashSize      int64         `yaml:"flash_size,omitempty"`
	Enter          string        `yaml:"enter,omitempty"`
	EnterCommand   string        `yaml:"enter_command,omitempty"`
	StrapOn        string        `yaml:"strap_on,omitempty"`
	StrapOff       string        `yaml:"strap_off,omitempty"`
	Prompt         string        `yaml:"prompt,omitempty"`
	LoadCommand    string        `yaml:"load_command,omitempty"`
	BootCommand    string        `yaml:"boot_command,omitempty"`
	VersionCommand string        `yaml:"version_command,omitempty"`
	Timeout        string        `yaml:"timeout,omitempty"`
	DFU            *fileFlashDFU `yaml:"dfu,omitempty"`
}

type fileFlashDFU struct {
	VID        string `yaml:"vid"`
	PID        string `yaml:"pid"`
	Serial     string `yaml:"serial,omitempty"`
	Alt        int    `yaml:"alt,omitempty"`
	Address    string `yaml:"address,omitempty"`
	MassErase  bool   `yaml:"mass_erase,omitempty"`
	RuntimeVID string `yaml:"runtime_vid,omitempty"`
	RuntimePID string `yaml:"runtime_pid,omitempty"`
}

type fileACS struct {
	Prompt         string            `yaml:"prompt,omitempty"`
	DataDir        string            `yaml:"data_dir,omitempty"`
	BootTimeout    string            `yaml:"boot_timeout,omitempty"`
	CommandTimeout string            `yaml:"command_timeout,omitempty"`
	Commands       map[string]string `yaml:"commands,omitempty"`
}

// Marshal encodes the bench as YAML. Paths inside the directory of b.Path
// are written relative to it, others absolute, so the file can move with
// the files it references.
func (b *Bench) Marshal() ([]byte, error) {
	dir := ""
	if b.Path != "" {
		dir = filepath.Dir(b.Path)
	}
	return b.marshal(dir)
}

// Write writes the bench to path, with paths relative to path's directory
// where they lie inside it. It first checks that Load(path) would accept
// the result (referenced files must exist) and writes nothing otherwise.
// The file is replaced atomically; b itself is not changed.
func (b *Bench) Write(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	data, err := b.marshal(filepath.Dir(abs))
	if err != nil {
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	if _, err := Parse(path, data); err != nil {
		return fmt.Errorf("writing bench %s: it would not load:\n%w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), abs); err != nil {
		return fmt.Errorf("writing bench %s: %w", path, err)
	}
	return nil
}

func (b *Bench) marshal(dir string) ([]byte, error) {
	rel := func(p string) string { return relativeTo(dir, p) }
	rels := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, rel(p))
		}
		return out
	}
	fb := fileBench{
		Signer: fileSigner{
			Type:          b.Signer.Type,
			Key:           rel(b.Signer.Key),
			Certificate:   rel(b.Signer.Certificate),
			Intermediates: rels(b.Signer.Intermediates),
			Roots:         rels(b.Signer.Roots),

			Serial:           b.Signer.Serial,
			Reader:           b.Signer.Reader,
			Slot:             b.Signer.Slot,
			PINFile:          rel(b.Signer.PINFile),
			Attestation:      b.Signer.Attestation,
			AttestationRoots: rels(b.Signer.AttestationRoots),
			AllowLastRetry:   b.Signer.AllowLastRetry,
			ReplugTimeout:    durationString(b.Signer.ReplugTimeout),
			MaxSignatures:    b.Signer.MaxSignatures,
			StateDir:         rel(b.Signer.StateDir),
			Socket:           rel(b.Signer.Socket),
		},
		Profile: fileProfile{
			DeviceConf:      rel(b.Profile.DeviceConf),
			Extensions:      b.Profile.Extensions,
			DeviceTypeField: b.Profile.DeviceTypeField,
			PerDeviceFields: b.Profile.PerDeviceFields,
			ValidityDays:    b.Profile.ValidityDays,
		},
		Output: rel(b.Output),
	}
	if l := b.Ledger; l != (LedgerConfig{}) {
		fb.Ledger = &fileLedger{Driver: l.Driver, Path: rel(l.Path), DSN: l.DSN}
		if fb.Ledger.Driver == "" {
			fb.Ledger.Driver = LedgerSQLite
		}
	}
	if fc := b.Factory; fc.DeviceType != "" || fc.Labels.Template != "" || fc.Sidewalk.APID != "" {
		ff := &fileFactory{DeviceType: fc.DeviceType}
		if fc.Labels.Template != "" {
			ff.Labels = &fileLabels{Template: fc.Labels.Template, ModuleSize: fc.Labels.ModuleSize, DPI: fc.Labels.DPI}
		}
		if fc.Sidewalk.APID != "" {
			ff.Sidewalk = &fileSidewalk{APID: fc.Sidewalk.APID, Stage: fc.Sidewalk.Stage}
		}
		fb.Factory = ff
	}
	for _, t := range b.Targets {
		ft := fileTarget{
			Name:   t.Name,
			Family: t.Family,
			Console: fileConsole{
				Port:     t.Console.Port,
				Baud:     t.Console.Baud,
				DataBits: t.Console.DataBits,
				Parity:   t.Console.Parity,
				StopBits: t.Console.StopBits,
				Reopen:   durationString(t.Console.Reopen),
			},
		}
		if u := t.Console.USB; u != nil {
			ft.Console.USB = &fileUSB{VID: u.VID, PID: u.PID, Serial: u.Serial}
		}
		if pw := t.Power; pw != nil {
			ft.Power = &filePower{Type: pw.Type, Hub: pw.Hub, Port: pw.Port, On: pw.On, Off: pw.Off, Cycle: pw.Cycle,
				State: pw.State, OnPattern: pw.OnPattern, OffPattern: pw.OffPattern, Timeout: durationString(pw.Timeout),
				Socket: relativeTo(dir, pw.Socket), OffTime: durationString(pw.OffTime)}
		}
		if a := t.ACK; a != nil {
			fa := &fileACK{Mode: a.Mode, Module: a.Module, ProductConfig: relativeTo(dir, a.ProductConfig),
				BootTimeout: durationString(a.BootTimeout), ExchangeTimeout: durationString(a.ExchangeTimeout),
				SlowTimeout: durationString(a.SlowTimeout)}
			if x := a.External; x != nil {
				fa.External = &fileACKExternal{Command: x.Command, PINFile: relativeTo(dir, x.PINFile), Success: x.Success,
					Failure: x.Failure, Timeout: durationString(x.Timeout)}
			}
			ft.ACK = fa
		}
		if fl := t.Flash; fl != nil {
			ff := &fileFlash{Method: fl.Method, FlashSize: fl.FlashSize, Enter: fl.Enter, EnterCommand: fl.EnterCommand,
				StrapOn: fl.StrapOn, StrapOff: fl.StrapOff, Prompt: fl.Prompt, LoadCommand: fl.LoadCommand,
				BootCommand: fl.BootCommand, VersionCommand: fl.VersionCommand, Timeout: durationString(fl.Timeout)}
			if d := fl.DFU; d != nil {
				ff.DFU = &fileFlashDFU{VID: d.VID, PID: d.PID, Serial: d.Serial, Alt: d.Alt, MassErase: d.MassErase, RuntimeVID: d.RuntimeVID, RuntimePID: d.RuntimePID}
				if d.Address != 0 {
					ff.DFU.Address = fmt.Sprintf("0x%08x", d.Address)
				}
			}
			ft.Flash = ff
		}
		if a := t.ACS; a != nil {
			ft.ACS = &fileACS{
				Prompt:         a.Prompt,
				DataDir:        a.DataDir,
				BootTimeout:    durationString(a.BootTimeout),
				CommandTimeout: durationString(a.CommandTimeout),
				Commands:       a.Commands,
			}
		}
		fb.Targets = append(fb.Targets, ft)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&fb); err != nil {
		return nil, fmt.Errorf("encoding bench: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding bench: %w", err)
	}
	return buf.Bytes(), nil
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// relativeTo returns p relative to dir if p lies inside dir, else p.
func relativeTo(dir, p string) string {
	if dir == "" || p == "" || !filepath.IsAbs(p) {
		return p
	}
	r, err := filepath.Rel(dir, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return p
	}
	return r
}

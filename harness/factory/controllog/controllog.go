// Package controllog writes the control logs a factory uploads after manufacturing, from the
// ledger's verified records: the FFS/AVS device control log (the FFS provisioning guide: the
// device id and the DHA public key) and the Sidewalk control log (the Sidewalk bulk provisioning
// guide: version 4-0-1, the Sidewalk manufacturing serial number, the APID and the certificate
// chain). Each log file gets a SHA-256 file beside it, in sha256sum's format.
//
// # Concepts
//
//   - SMSN, the Sidewalk manufacturing serial number: SHA-256 of the ASCII string
//     deviceType + "-" + STAGE + DSN + APID, STAGE one of PRODUCTION, TEST, PREPRODUCTION;
//     written as upper-case hex.
//   - A batch is the verified devices no earlier log in the output directory lists: running
//     again after more devices were made writes a log of the new ones only, and nothing when
//     there are none (a device is never in two logs, which the import would refuse as a
//     duplicate).
//   - The shapes are checked by the JSON Schemas in docs/schemas, with an independent validator
//     in the tests.
package controllog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"hilbench/harness/factory/devices"
	"hilbench/harness/factory/outdir"
	"hilbench/harness/pki"
)

// Formats.
const (
	FormatFFS      = "ffs"
	FormatSidewalk = "sidewalk"
)

// Formats lists the formats Write accepts.
var Formats = []string{FormatFFS, FormatSidewalk}

// SidewalkVersion is the control log version the Sidewalk bulk provisioning guide shows.
const SidewalkVersion = "4-0-1"

// Stages of a Sidewalk device, as the bench names them (lower case, also the log's label).
var Stages = []string{"production", "test", "preproduction"}

// Config is what the logs say about the product (the bench's factory settings).
type Config struct {
	DeviceType string // Amazon's Device Type ID
	APID       string // Sidewalk: advertised product id
	Stage      string // Sidewalk: production, test or preproduction
}

var (
	// ErrConfig: the bench lacks a setting the format needs.
	ErrConfig = errors.New("control log settings")
	// ErrDevice: a device's record cannot go into a log (no device id).
	ErrDevice = errors.New("device cannot be logged")
)

// SMSN is the Sidewalk manufacturing serial number of a device.
func SMSN(deviceType, stage, dsn, apid string) (string, error) {
	if !slices.Contains(Stages, strings.ToLower(stage)) {
		return "", fmt.Errorf("%w: stage %q is not one of %s", ErrConfig, stage, strings.Join(Stages, ", "))
	}
	for name, v := range map[string]string{"device type": deviceType, "DSN": dsn, "APID": apid} {
		if v == "" {
			return "", fmt.Errorf("%w: an SMSN needs the %s", ErrConfig, name)
		}
	}
	sum := sha256.Sum256([]byte(deviceType + "-" + strings.ToUpper(stage) + dsn + apid))
	return strings.ToUpper(hex.EncodeToString(sum[:])), nil
}

// FFSLog is the FFS device control log file.
type FFSLog struct {
	ControlLogs []FFSEntry `json:"controlLogs"`
}

// FFSEntry is one device of an FFS control log.
type FFSEntry struct {
	Device  FFSDevice `json:"device"`
	DHAData DHAData   `json:"dhaData"`
}

type FFSDevice struct {
	SerialNumber      string            `json:"serialNumber"`
	ProductIdentifier ProductIdentifier `json:"productIdentifier"`
}

type ProductIdentifier struct {
	DeviceTypeID        string `json:"deviceTypeId,omitempty"`
	AdvertisedProductID string `json:"advertisedProductId,omitempty"`
}

// DHAData is the device's authentication material: the DHA public key as the FFS provisioning
// guide's `openssl x509 -pubkey -noout | openssl enc -base64 -d | openssl enc -base64` gives it
// (base64 of the DER SubjectPublicKeyInfo, here on one line), and the certificate's SHA-256.
type DHAData struct {
	PublicKey         string `json:"publicKey"`
	CertificateSHA256 string `json:"certificateSha256"`
}

// SidewalkLog is the Sidewalk control log file.
type SidewalkLog struct {
	ControlLogs []SidewalkEntry `json:"controlLogs"`
}

type SidewalkEntry struct {
	Version string         `json:"version"`
	Device  SidewalkDevice `json:"device"`
}

type SidewalkDevice struct {
	SerialNumber      string            `json:"serialNumber"` // the SMSN
	ProductIdentifier ProductIdentifier `json:"productIdentifier"`
	SidewalkData      SidewalkData      `json:"sidewalkData"`
}

// SidewalkData holds the device's chains. The ledger holds the X.509 P-256 chain (leaf first,
// DER certificates concatenated, base64); a device with no Ed25519 chain in the ledger has none
// here.
type SidewalkData struct {
	ED25519CertificateChain string `json:"sidewalkED25519CertificateChain,omitempty"`
	P256R1CertificateChain  string `json:"sidewalkP256R1CertificateChain"`
	Label                   string `json:"label"`
}

// FileName is the log's file name for a batch made at t: Sidewalk's C_CONTROL_LOG_<yyyyMMddhhmmss>.txt,
// FFS_CONTROL_LOG_<yyyyMMddhhmmss>.json.
func FileName(format string, t time.Time) string {
	stamp := t.UTC().Format("20060102150405")
	if format == FormatSidewalk {
		return "C_CONTROL_LOG_" + stamp + ".txt"
	}
	return "FFS_CONTROL_LOG_" + stamp + ".json"
}

var (
	sidewalkName = regexp.MustCompile(`^C_CONTROL_LOG_[0-9]{14}\.txt$`)
	ffsName      = regexp.MustCompile(`^FFS_CONTROL_LOG_[0-9]{14}\.json$`)
)

// IsLogName says whether name is a control log file of format.
func IsLogName(format, name string) bool {
	if format == FormatSidewalk {
		return sidewalkName.MatchString(name)
	}
	return ffsName.MatchString(name)
}

// FFS makes the FFS entries of devs.
func FFS(devs []devices.Device, cfg Config) ([]FFSEntry, error) {
	if cfg.DeviceType == "" {
		return nil, fmt.Errorf("%w: the FFS control log needs factory.device_type (the Device Type ID)", ErrConfig)
	}
	out := make([]FFSEntry, 0, len(devs))
	for i := range devs {
		d := &devs[i]
		if d.ID() == "" {
			return nil, fmt.Errorf("%w: %s has no device id (serial/DSN) to log it under", ErrDevice, d.Name())
		}
		out = append(out, FFSEntry{
			Device:  FFSDevice{SerialNumber: d.ID(), ProductIdentifier: ProductIdentifier{DeviceTypeID: cfg.DeviceType}},
			DHAData: DHAData{PublicKey: pki.ControlLogPublicKey(d.Leaf()), CertificateSHA256: pki.Fingerprint(d.Leaf())},
		})
	}
	return out, nil
}

// Sidewalk makes the Sidewalk entries of devs.
func Sidewalk(devs []devices.Device, cfg Config) ([]SidewalkEntry, error) {
	if cfg.DeviceType == "" || cfg.APID == "" || cfg.Stage == "" {
		return nil, fmt.Errorf("%w: the Sidewalk control log needs factory.device_type, factory.sidewalk.apid and factory.sidewalk.stage", ErrConfig)
	}
	out := make([]SidewalkEntry, 0, len(devs))
	for i := range devs {
		d := &devs[i]
		if d.ID() == "" {
			return nil, fmt.Errorf("%w: %s has no device id (DSN) for its SMSN", ErrDevice, d.Name())
		}
		smsn, err := SMSN(cfg.DeviceType, cfg.Stage, d.ID(), cfg.APID)
		if err != nil {
			return nil, err
		}
		var der []byte
		for _, c := range d.Chain {
			der = append(der, c.Raw...)
		}
		out = append(out, SidewalkEntry{Version: SidewalkVersion, Device: SidewalkDevice{
			SerialNumber:      smsn,
			ProductIdentifier: ProductIdentifier{AdvertisedProductID: cfg.APID},
			SidewalkData:      SidewalkData{P256R1CertificateChain: base64.StdEncoding.EncodeToString(der), Label: strings.ToLower(cfg.Stage)},
		}})
	}
	return out, nil
}

// Batch is one log file to write.
type Batch struct {
	Name    string // file name
	Data    []byte // the log
	Devices int    // entries in it
	Skipped int    // devices already in an earlier log of the directory
}

// Make builds the next batch of format for dir: the devices of devs no log in dir lists yet.
// Batch.Devices is 0 when there is nothing new (then nothing is to be written).
func Make(format string, devs []devices.Device, cfg Config, dir string, now time.Time) (Batch, error) {
	if !slices.Contains(Formats, format) {
		return Batch{}, fmt.Errorf("control log format %q: want %s", format, strings.Join(Formats, " or "))
	}
	logged, err := Logged(format, dir)
	if err != nil {
		return Batch{}, err
	}
	b := Batch{Name: FileName(format, now)}
	var doc any
	switch format {
	case FormatFFS:
		all, err := FFS(devs, cfg)
		if err != nil {
			return Batch{}, err
		}
		var fresh []FFSEntry
		for _, e := range all {
			if logged[e.Device.SerialNumber] {
				b.Skipped++
				continue
			}
			fresh = append(fresh, e)
		}
		b.Devices, doc = len(fresh), FFSLog{ControlLogs: fresh}
	case FormatSidewalk:
		all, err := Sidewalk(devs, cfg)
		if err != nil {
			return Batch{}, err
		}
		var fresh []SidewalkEntry
		for _, e := range all {
			if logged[e.Device.SerialNumber] {
				b.Skipped++
				continue
			}
			fresh = append(fresh, e)
		}
		b.Devices, doc = len(fresh), SidewalkLog{ControlLogs: fresh}
	}
	if b.Devices == 0 {
		return b, nil
	}
	if _, err := os.Lstat(filepath.Join(dir, b.Name)); err == nil {
		return Batch{}, fmt.Errorf("%s already exists in %s (one batch a second): run again", b.Name, dir)
	}
	b.Data, err = json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return Batch{}, err
	}
	b.Data = append(b.Data, '\n')
	return b, nil
}

// Files are the batch's files: the log and its SHA-256 file ("<hex>  <name>\n", as sha256sum
// writes it and `sha256sum -c` reads it).
func (b Batch) Files() []outdir.File {
	sum := sha256.Sum256(b.Data)
	return []outdir.File{
		{Name: b.Name, Data: b.Data},
		{Name: b.Name + ".sha256", Data: []byte(hex.EncodeToString(sum[:]) + "  " + b.Name + "\n")},
	}
}

// Logged returns the serial numbers (FFS: device ids; Sidewalk: SMSNs) the logs of format in
// dir list. A missing dir lists none.
func Logged(format, dir string) (map[string]bool, error) {
	logs, err := ReadDir(format, dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, l := range logs {
		for _, s := range l.Serials {
			seen[strings.ToUpper(s.Serial)] = true
			seen[s.Serial] = true
		}
	}
	return seen, nil
}

// Serial is one entry of a log as Read finds it.
type Serial struct {
	Serial string // serialNumber
	APID   string // advertisedProductId (Sidewalk)
	Index  int    // 0-based entry in the log
}

// File is one control log read back.
type File struct {
	Path    string
	Serials []Serial
	// SumOK: the .sha256 file beside it names it and matches its contents.
	SumOK bool
	// SumProblem says why not ("" when SumOK).
	SumProblem string
}

// ReadDir reads every log of format in dir, in name order. A log that is not JSON of the
// format's shape is an error naming the file.
func ReadDir(format, dir string) ([]File, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control logs: %w", err)
	}
	var out []File
	for _, e := range ents {
		if e.IsDir() || !IsLogName(format, e.Name()) {
			continue
		}
		f, err := Read(format, filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Read reads one log and checks its SHA-256 file.
func Read(format, path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("control log: %w", err)
	}
	f := File{Path: path}
	dec := json.NewDecoder(bytes.NewReader(data))
	switch format {
	case FormatSidewalk:
		var l SidewalkLog
		if err := dec.Decode(&l); err != nil {
			return File{}, fmt.Errorf("control log %s: not a Sidewalk control log: %w", path, err)
		}
		for i, e := range l.ControlLogs {
			f.Serials = append(f.Serials, Serial{Serial: e.Device.SerialNumber, APID: e.Device.ProductIdentifier.AdvertisedProductID, Index: i})
		}
	default:
		var l FFSLog
		if err := dec.Decode(&l); err != nil {
			return File{}, fmt.Errorf("control log %s: not an FFS control log: %w", path, err)
		}
		for i, e := range l.ControlLogs {
			f.Serials = append(f.Serials, Serial{Serial: e.Device.SerialNumber, Index: i})
		}
	}
	f.SumOK, f.SumProblem = checkSum(path, data)
	return f, nil
}

func checkSum(path string, data []byte) (bool, string) {
	line, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return false, "no SHA-256 file " + filepath.Base(path) + ".sha256"
	}
	fields := strings.Fields(string(line))
	if len(fields) != 2 || strings.TrimPrefix(fields[1], "*") != filepath.Base(path) {
		return false, filepath.Base(path) + ".sha256 does not name " + filepath.Base(path)
	}
	sum := sha256.Sum256(data)
	if !strings.EqualFold(fields[0], hex.EncodeToString(sum[:])) {
		return false, "SHA-256 of " + filepath.Base(path) + " does not match its .sha256 file (changed or truncated)"
	}
	return true, ""
}

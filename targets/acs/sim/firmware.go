package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"hilbench/targets/simpower"
)

// Firmware images and the A/B slots of the boot ROM (see the package doc).

// imageMagic starts the first line of every image: "HILSIM-FW version=<v>\n".
const imageMagic = "HILSIM-FW version="

// maxHeaderLine bounds the first line of an image.
const maxHeaderLine = 256

// maxImageSize is the size of a slot: larger transfers are refused.
const maxImageSize = 64 << 20

// builtinPayload is the payload of the image slot A holds initially.
const builtinPayload = "hilbench ACS simulator firmware (built-in image)\n"

// Slots of the boot ROM.
const (
	SlotA = "A"
	SlotB = "B"
)

// BuildImage makes a firmware image the simulated boot ROM accepts: the line
// "HILSIM-FW version=<version>\n", the payload, then the SHA-256 (32 raw
// bytes) of everything before it. It is the image producer (a firmware build
// system) for tests, specs and demos. version should be printable ASCII
// without spaces.
func BuildImage(version string, payload []byte) []byte {
	img := make([]byte, 0, len(imageMagic)+len(version)+1+len(payload)+sha256.Size)
	img = append(img, imageMagic...)
	img = append(img, version...)
	img = append(img, '\n')
	img = append(img, payload...)
	sum := sha256.Sum256(img)
	return append(img, sum[:]...)
}

// imageVersion returns the version in img's first line, "" if it has none.
func imageVersion(img []byte) string {
	line := img[:min(len(img), maxHeaderLine)]
	i := bytes.IndexByte(line, '\n')
	if i < 0 || !bytes.HasPrefix(line, []byte(imageMagic)) {
		return ""
	}
	v := string(line[len(imageMagic):i])
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return ""
		}
	}
	return v
}

// checkImage tells why img is not a valid image, nil if it is; version is
// the image's version when valid.
func checkImage(img []byte) (version string, err error) {
	v := imageVersion(img)
	if v == "" {
		return "", errors.New("no 'HILSIM-FW version=<version>' header line")
	}
	if len(img) < len(imageMagic)+len(v)+1+sha256.Size {
		return "", fmt.Errorf("too short (%d bytes) to hold a header and a SHA-256", len(img))
	}
	body, digest := img[:len(img)-sha256.Size], img[len(img)-sha256.Size:]
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], digest) {
		return "", fmt.Errorf("SHA-256 mismatch (computed %s, trailer %s)", hex.EncodeToString(sum[:]), hex.EncodeToString(digest))
	}
	return v, nil
}

// slotInfo is what the boot ROM knows about one slot.
type slotInfo struct {
	name    string
	size    int64
	sha256  string
	version string // from the header line, "" if none
	valid   bool
	why     error // why not valid
}

func otherSlot(s string) string {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// slotPath is the file holding a slot's image.
func (l layout) slotPath(slot string) string {
	return filepath.Join(l.fw, "slot_"+strings.ToLower(slot)+".img")
}

// readSlot reads and checks a slot. A missing file is an empty slot.
func (l layout) readSlot(slot string) slotInfo {
	img, err := os.ReadFile(l.slotPath(slot))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return slotInfo{name: slot, why: err, sha256: hex.EncodeToString(sha256.New().Sum(nil))}
	}
	sum := sha256.Sum256(img)
	si := slotInfo{name: slot, size: int64(len(img)), sha256: hex.EncodeToString(sum[:]), version: imageVersion(img)}
	if len(img) == 0 {
		si.why = errors.New("empty")
		return si
	}
	if _, err := checkImage(img); err != nil {
		si.why = err
		return si
	}
	si.valid = true
	return si
}

// activeSlot reads the state file; A when it is missing or unreadable.
func (l layout) activeSlot() string {
	b, err := os.ReadFile(l.fwState)
	if err == nil && strings.TrimSpace(string(b)) == "active="+SlotB {
		return SlotB
	}
	return SlotA
}

// setActive writes the state file atomically: temp file, fsync, rename,
// fsync of the directory. A power cut leaves the old or the new state.
func (l layout) setActive(slot string) error {
	tmp := filepath.Join(l.fw, ".state.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("writing firmware state: %w", err)
	}
	_, err = f.WriteString("active=" + slot + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.fwState)
	}
	if err == nil {
		err = syncDir(l.fw)
	}
	if err != nil {
		return fmt.Errorf("writing firmware state: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// installFirmware creates fw/ on first use: slot A holds the built-in image
// of version, slot B is empty, A is active. Existing slots are kept: a
// flashed device stays flashed across simulator restarts.
func (l layout) installFirmware(version string) error {
	if err := os.MkdirAll(l.fw, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", l.fw, err)
	}
	if _, err := os.Stat(l.fwState); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("firmware state: %w", err)
	}
	img := BuildImage(version, []byte(builtinPayload))
	if err := writeFileAtomic(l.slotPath(SlotA), img, 0o644); err != nil {
		return err
	}
	return l.setActive(SlotA)
}

// pickSlot chooses the slot to boot: the active one if valid, else the other
// one if valid (fallback true); ok false when neither is.
func (l layout) pickSlot() (si slotInfo, fallback bool, ok bool) {
	active := l.activeSlot()
	if si := l.readSlot(active); si.valid {
		return si, false, true
	}
	if si := l.readSlot(otherSlot(active)); si.valid {
		return si, true, true
	}
	return slotInfo{}, false, false
}

// RunningVersion is the firmware version of the slot the running firmware
// was booted from (what the banner and fw_version show); "" while the device
// is off, resetting or in the boot ROM.
func (d *Device) RunningVersion() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running
}

// RunningSlot is the slot the running firmware was booted from ("A" or "B");
// "" when RunningVersion is.
func (d *Device) RunningSlot() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runSlot
}

// ActiveSlot is the slot the boot ROM's state file marks active, "A" or "B":
// the one the next boot tries first. loady writes the other one.
func (d *Device) ActiveSlot() string { return d.l.activeSlot() }

// InBootloader reports whether the boot ROM's command line is running.
func (d *Device) InBootloader() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bl != nil
}

// SlotPath is the host file holding slot "A" or "B" ("" for another name),
// for tests that inspect or damage it.
func (d *Device) SlotPath(slot string) string {
	if slot != SlotA && slot != SlotB {
		return ""
	}
	return d.l.slotPath(slot)
}

// SetBootStrap sets or clears the boot strap, like a jumper: while set,
// every power-on and reset enters the boot ROM's command line. It takes
// effect at the next power-on or reset.
func (d *Device) SetBootStrap(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.strap = on
}

// BootStrap reports whether the boot strap is set.
func (d *Device) BootStrap() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.strap
}

// ServePower serves the device's power switch (PowerOn, PowerOff, Powered)
// on <Dir>/power.sock with the simpower protocol. The caller closes the
// server (before or after Close of the device).
func (d *Device) ServePower() (*simpower.Server, error) {
	return simpower.Serve(filepath.Join(d.l.dir, "power.sock"), d)
}

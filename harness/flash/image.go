// Package flash loads firmware images (raw binary, Intel HEX, DFU files)
// and sends them to a target over YMODEM, with a progress bar for people
// watching.
package flash

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Image formats Load understands.
const (
	FormatRaw  = "raw"
	FormatIHex = "ihex"
	FormatDFU  = "dfu"
)

// Image is a firmware image ready to write.
type Image struct {
	Path   string
	Format string // FormatRaw, FormatIHex or FormatDFU
	// Data is what to write. For Intel HEX it is the contiguous binary from
	// the lowest address, gaps filled with 0xFF; for DFU files it is the
	// file without its suffix.
	Data        []byte
	BaseAddress uint32 // Intel HEX: lowest address; 0 otherwise
	SHA256      [32]byte
	DFU         *DFUSuffix // DFU files only

	// Entry is the start address of an Intel HEX file (record 05, or
	// CS<<4+IP from record 03); HasEntry says whether it had one.
	Entry    uint32
	HasEntry bool
}

// Load reads the image at path. format is "raw", "ihex", "dfu", or "" to go
// by the extension (.hex and .ihex are Intel HEX, .dfu is DFU, anything
// else is raw).
func Load(path, format string) (*Image, error) {
	if format == "" {
		format = formatFor(path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("flash image: %w", err)
	}
	img, err := Parse(raw, format)
	if err != nil {
		return nil, fmt.Errorf("flash image %s: %w", path, err)
	}
	img.Path = path
	return img, nil
}

// Parse is Load for bytes already in memory.
func Parse(raw []byte, format string) (*Image, error) {
	img := &Image{Format: format}
	switch format {
	case FormatRaw:
		img.Data = raw
	case FormatIHex:
		h, err := parseIHex(raw)
		if err != nil {
			return nil, err
		}
		img.Data, img.BaseAddress = h.data, h.base
		img.Entry, img.HasEntry = h.entry, h.hasEntry
	case FormatDFU:
		data, suffix, err := parseDFU(raw)
		if err != nil {
			return nil, err
		}
		img.Data, img.DFU = data, suffix
	default:
		return nil, fmt.Errorf("unknown image format %q (want %q, %q or %q)", format, FormatRaw, FormatIHex, FormatDFU)
	}
	if len(img.Data) == 0 {
		return nil, errors.New("image is empty: nothing to write")
	}
	img.SHA256 = sha256.Sum256(img.Data)
	return img, nil
}

func formatFor(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hex", ".ihex":
		return FormatIHex
	case ".dfu":
		return FormatDFU
	}
	return FormatRaw
}

// CheckFits fails when the image is larger than the target's flash.
func (img *Image) CheckFits(flashSize int64) error {
	if n := int64(len(img.Data)); n > flashSize {
		return fmt.Errorf("%s: image is %d bytes; the target's flash holds %d", img.name(), n, flashSize)
	}
	return nil
}

// CheckDFUID fails when the image is a DFU file made for another USB
// device. 0xFFFF in the suffix matches any id; images without a suffix
// claim no device and pass.
func (img *Image) CheckDFUID(vid, pid uint16) error {
	s := img.DFU
	if s == nil {
		return nil
	}
	if (s.IDVendor == 0xFFFF || s.IDVendor == vid) && (s.IDProduct == 0xFFFF || s.IDProduct == pid) {
		return nil
	}
	return fmt.Errorf("%s: DFU file is for USB device %04x:%04x; the target is %04x:%04x",
		img.name(), s.IDVendor, s.IDProduct, vid, pid)
}

// Summary is one line to show before flashing: what, how big, which hash.
func (img *Image) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s, %d bytes", img.name(), img.Format, len(img.Data))
	if img.Format == FormatIHex {
		fmt.Fprintf(&b, " at 0x%08x", img.BaseAddress)
		if img.HasEntry {
			fmt.Fprintf(&b, ", entry 0x%08x", img.Entry)
		}
	}
	if s := img.DFU; s != nil {
		fmt.Fprintf(&b, ", for %04x:%04x", s.IDVendor, s.IDProduct)
		if s.DfuSe {
			b.WriteString(" (DfuSe)")
		}
	}
	fmt.Fprintf(&b, ", sha256 %s", hex.EncodeToString(img.SHA256[:]))
	return b.String()
}

func (img *Image) name() string {
	if img.Path == "" {
		return "image"
	}
	return img.Path
}

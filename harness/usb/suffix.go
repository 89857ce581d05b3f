package usb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Suffix is the DFU file suffix: the last 16 bytes of a .dfu file.
type Suffix struct {
	Device, Product, Vendor uint16 // 0xFFFF means any
	DFUVersion              uint16
}

// ErrNoSuffix is a file without a DFU suffix.
var ErrNoSuffix = errors.New("no DFU suffix")

// SplitSuffix separates a .dfu file into the image and its suffix, checking the CRC
// (reflected CRC-32 over everything before dwCRC, initial 0xFFFFFFFF, no final xor).
func SplitSuffix(file []byte) ([]byte, Suffix, error) {
	if len(file) < 16 {
		return nil, Suffix{}, ErrNoSuffix
	}
	s := file[len(file)-16:]
	if string(s[8:11]) != "UFD" || s[11] < 16 {
		return nil, Suffix{}, ErrNoSuffix
	}
	n := int(s[11])
	if n > len(file) {
		return nil, Suffix{}, fmt.Errorf("DFU suffix length %d exceeds the file (%d bytes)", n, len(file))
	}
	want := binary.LittleEndian.Uint32(s[12:])
	// crc32.IEEE is reflected with init and final xor 0xFFFFFFFF; undo the final xor.
	if got := ^crc32.ChecksumIEEE(file[:len(file)-4]); got != want {
		return nil, Suffix{}, fmt.Errorf("DFU suffix CRC 0x%08x, file has 0x%08x", got, want)
	}
	suf := Suffix{Device: binary.LittleEndian.Uint16(s[0:]), Product: binary.LittleEndian.Uint16(s[2:]),
		Vendor: binary.LittleEndian.Uint16(s[4:]), DFUVersion: binary.LittleEndian.Uint16(s[6:])}
	return file[:len(file)-n], suf, nil
}

// AppendSuffix appends a DFU suffix to image.
func AppendSuffix(image []byte, s Suffix) []byte {
	out := append([]byte(nil), image...)
	out = binary.LittleEndian.AppendUint16(out, s.Device)
	out = binary.LittleEndian.AppendUint16(out, s.Product)
	out = binary.LittleEndian.AppendUint16(out, s.Vendor)
	out = binary.LittleEndian.AppendUint16(out, s.DFUVersion)
	out = append(out, 'U', 'F', 'D', 16)
	return binary.LittleEndian.AppendUint32(out, ^crc32.ChecksumIEEE(out))
}

// Matches tells whether the suffix allows a device with these IDs (0xFFFF is a wildcard).
func (s Suffix) Matches(vendor, product uint16) bool {
	return (s.Vendor == 0xFFFF || s.Vendor == vendor) && (s.Product == 0xFFFF || s.Product == product)
}

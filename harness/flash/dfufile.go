package flash

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// DFUSuffix is the 16-byte trailer of a .dfu file (USB DFU 1.1 appendix B).
type DFUSuffix struct {
	BCDDevice uint16
	IDProduct uint16 // 0xFFFF: any
	IDVendor  uint16 // 0xFFFF: any
	BCDDFU    uint16 // 0x0100 plain DFU, 0x011a DfuSe
	Length    uint8  // bLength, 16 in practice
	CRC       uint32
	// DfuSe is set when the payload starts with ST's "DfuSe" prefix. Data
	// keeps that prefix; its targets are not parsed.
	DfuSe bool
}

const dfuSuffixLen = 16

// dfuCRC is the suffix's dwCRC: CRC-32 with init 0xFFFFFFFF and no final
// xor, as dfu-util computes it, which is the complement of the usual
// IEEE CRC-32.
func dfuCRC(p []byte) uint32 { return ^crc32.ChecksumIEEE(p) }

func parseDFU(raw []byte) ([]byte, *DFUSuffix, error) {
	if len(raw) < dfuSuffixLen {
		return nil, nil, fmt.Errorf("DFU file is %d bytes, too short for its %d-byte suffix", len(raw), dfuSuffixLen)
	}
	tail := raw[len(raw)-dfuSuffixLen:]
	if string(tail[8:11]) != "UFD" {
		return nil, nil, fmt.Errorf("no DFU suffix: signature at offset %d is %q, want \"UFD\"", len(raw)-8, tail[8:11])
	}
	s := &DFUSuffix{
		BCDDevice: binary.LittleEndian.Uint16(tail[0:]),
		IDProduct: binary.LittleEndian.Uint16(tail[2:]),
		IDVendor:  binary.LittleEndian.Uint16(tail[4:]),
		BCDDFU:    binary.LittleEndian.Uint16(tail[6:]),
		Length:    tail[11],
		CRC:       binary.LittleEndian.Uint32(tail[12:]),
	}
	// A longer suffix is allowed: its extra bytes precede the standard 16.
	if int(s.Length) < dfuSuffixLen || int(s.Length) > len(raw) {
		return nil, nil, fmt.Errorf("DFU suffix length (offset %d) is %d; want at least %d and at most the file's %d bytes",
			len(raw)-5, s.Length, dfuSuffixLen, len(raw))
	}
	if got := dfuCRC(raw[:len(raw)-4]); got != s.CRC {
		return nil, nil, fmt.Errorf("DFU suffix CRC mismatch: suffix says %08x, file has %08x (corrupt or edited after suffixing)", s.CRC, got)
	}
	data := raw[:len(raw)-int(s.Length)]
	s.DfuSe = bytes.HasPrefix(data, []byte("DfuSe"))
	return data, s, nil
}

// AppendDFUSuffix returns data followed by a DFU 1.0 suffix for vid:pid,
// as `dfu-suffix -v vid -p pid -d bcdDevice -a` would write it.
func AppendDFUSuffix(data []byte, vid, pid, bcdDevice uint16) []byte {
	out := make([]byte, 0, len(data)+dfuSuffixLen)
	out = append(out, data...)
	out = binary.LittleEndian.AppendUint16(out, bcdDevice)
	out = binary.LittleEndian.AppendUint16(out, pid)
	out = binary.LittleEndian.AppendUint16(out, vid)
	out = binary.LittleEndian.AppendUint16(out, 0x0100)
	out = append(out, 'U', 'F', 'D', dfuSuffixLen)
	return binary.LittleEndian.AppendUint32(out, dfuCRC(out))
}

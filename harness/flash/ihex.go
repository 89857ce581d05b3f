package flash

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"
)

// maxIHexSpan bounds the binary an Intel HEX file may expand to: a stray
// record far away must not make us allocate gigabytes of 0xFF.
const maxIHexSpan = 64 << 20

// Intel HEX record types.
const (
	ihexData     = 0x00
	ihexEOF      = 0x01
	ihexSegment  = 0x02 // extended segment address
	ihexStartSeg = 0x03 // CS:IP
	ihexLinear   = 0x04 // extended linear address
	ihexStartLin = 0x05 // EIP
)

// ihexFixedLen is the data length of every record type but data.
var ihexFixedLen = map[byte]int{ihexEOF: 0, ihexSegment: 2, ihexLinear: 2, ihexStartSeg: 4, ihexStartLin: 4}

type ihexImage struct {
	data     []byte
	base     uint32
	entry    uint32
	hasEntry bool
}

// ihexChunk is the payload of one data record, placed.
type ihexChunk struct {
	addr uint32
	data []byte
	line int
}

func parseIHex(raw []byte) (*ihexImage, error) {
	var (
		chunks  []ihexChunk
		upper   uint32 // from record 02 or 04
		eofLine int
		out     ihexImage
	)
	for i, text := range bytes.Split(raw, []byte("\n")) {
		n := i + 1
		text = bytes.TrimSpace(text)
		if len(text) == 0 {
			continue
		}
		if eofLine != 0 {
			return nil, fmt.Errorf("line %d: record after the end-of-file record on line %d", n, eofLine)
		}
		rec, err := ihexRecord(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		count, off, typ, payload := int(rec[0]), uint16(rec[1])<<8|uint16(rec[2]), rec[3], rec[4:4+int(rec[0])]
		if w, ok := ihexFixedLen[typ]; ok && count != w {
			return nil, fmt.Errorf("line %d: record type %02x has %d data bytes, want %d", n, typ, count, w)
		}
		switch typ {
		case ihexData:
			if count > 0 { // an empty data record places nothing (it made a 0-byte image: FuzzParseIHex)
				chunks = append(chunks, placeIHex(upper, off, payload, n)...)
			}
		case ihexEOF:
			eofLine = n
		case ihexSegment:
			upper = (uint32(payload[0])<<8 | uint32(payload[1])) << 4
		case ihexLinear:
			upper = (uint32(payload[0])<<8 | uint32(payload[1])) << 16
		case ihexStartSeg:
			cs := uint32(payload[0])<<8 | uint32(payload[1])
			ip := uint32(payload[2])<<8 | uint32(payload[3])
			out.entry, out.hasEntry = cs<<4+ip, true
		case ihexStartLin:
			out.entry = uint32(payload[0])<<24 | uint32(payload[1])<<16 | uint32(payload[2])<<8 | uint32(payload[3])
			out.hasEntry = true
		default:
			return nil, fmt.Errorf("line %d: unknown record type %02x", n, typ)
		}
	}
	if eofLine == 0 {
		return nil, fmt.Errorf("intel hex truncated: no end-of-file record (type 01)")
	}
	if len(chunks) == 0 {
		return nil, fmt.Errorf("intel hex has no data records: nothing to write")
	}
	sort.SliceStable(chunks, func(i, j int) bool { return chunks[i].addr < chunks[j].addr })
	lo := chunks[0].addr
	var hi uint64 // one past the highest byte; u64 as 0xFFFFFFFF+1 overflows u32
	for i, c := range chunks {
		end := uint64(c.addr) + uint64(len(c.data))
		if i > 0 && uint64(c.addr) < hi {
			prev := chunks[i-1]
			return nil, fmt.Errorf("line %d: data at 0x%08x overlaps data from line %d (0x%08x-0x%08x)",
				c.line, c.addr, prev.line, prev.addr, uint64(prev.addr)+uint64(len(prev.data))-1)
		}
		hi = max(hi, end)
	}
	if span := hi - uint64(lo); span > maxIHexSpan {
		return nil, fmt.Errorf("intel hex spans 0x%08x-0x%08x (%d bytes), more than the %d MiB limit",
			lo, hi-1, span, maxIHexSpan>>20)
	}
	out.base = lo
	out.data = bytes.Repeat([]byte{0xFF}, int(hi-uint64(lo)))
	for _, c := range chunks {
		copy(out.data[c.addr-lo:], c.data)
	}
	return &out, nil
}

// ihexRecord decodes ":LLAAAATT<data>CC" and checks its length and checksum.
func ihexRecord(text []byte) ([]byte, error) {
	if text[0] != ':' {
		return nil, fmt.Errorf("record does not start with ':'")
	}
	rec := make([]byte, hex.DecodedLen(len(text)-1))
	if _, err := hex.Decode(rec, text[1:]); err != nil {
		return nil, fmt.Errorf("bad hex digits in record: %v", err)
	}
	if len(rec) < 5 {
		return nil, fmt.Errorf("record is %d bytes long, shorter than the 5 every record has", len(rec))
	}
	if len(rec) != 5+int(rec[0]) {
		return nil, fmt.Errorf("record is %d bytes long; its byte count says %d", len(rec), 5+int(rec[0]))
	}
	var sum byte
	for _, b := range rec {
		sum += b
	}
	if sum != 0 {
		want := -(sum - rec[len(rec)-1])
		return nil, fmt.Errorf("bad checksum: record has %02x, contents sum to %02x", rec[len(rec)-1], want)
	}
	return rec, nil
}

// placeIHex gives a data record its absolute address. As the Intel HEX
// specification says, the offset wraps within the 64 KiB window of the
// last 02 or 04 record, so a record may split in two.
func placeIHex(upper uint32, off uint16, payload []byte, line int) []ihexChunk {
	data := append([]byte(nil), payload...)
	first := min(len(data), 0x10000-int(off))
	chunks := []ihexChunk{{addr: upper + uint32(off), data: data[:first], line: line}}
	if first < len(data) {
		chunks = append(chunks, ihexChunk{addr: upper, data: data[first:], line: line})
	}
	return chunks
}

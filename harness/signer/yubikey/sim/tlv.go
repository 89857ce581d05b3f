package sim

import (
	"errors"
	"fmt"
)

// BER-TLV as used by PIV (NIST SP 800-73-4 Part 1, Appendix A; ISO/IEC 7816-4
// clause 5.2). The card always answers with minimal (DER) lengths because
// piv-go parses responses with encoding/asn1, which rejects anything else;
// it accepts any definite length form from clients (yubico-piv-tool sends
// 0x82 lengths for short objects).

var errMalformedTLV = errors.New("malformed BER-TLV")

// tlvItem is one parsed data object.
type tlvItem struct {
	tag   uint32
	value []byte
}

// tlv encodes tag (one to three bytes, as written: 0x7F49, 0x5FC10A) and
// value with a minimal length.
func tlv(tag uint32, value []byte) []byte {
	out := make([]byte, 0, 4+3+len(value))
	switch {
	case tag > 0xFFFF:
		out = append(out, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		out = append(out, byte(tag>>8), byte(tag))
	default:
		out = append(out, byte(tag))
	}
	out = appendLength(out, len(value))
	return append(out, value...)
}

// appendLength appends a minimal BER length: one byte below 0x80, then 0x81
// and 0x82 forms (X.690 8.1.3).
func appendLength(out []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(out, byte(n))
	case n < 0x100:
		return append(out, 0x81, byte(n))
	default:
		return append(out, 0x82, byte(n>>8), byte(n))
	}
}

// parseTLVs splits b into consecutive data objects.
func parseTLVs(b []byte) ([]tlvItem, error) {
	var items []tlvItem
	for len(b) > 0 {
		it, rest, err := parseTLV(b)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
		b = rest
	}
	return items, nil
}

// parseTLV reads one data object from the front of b.
func parseTLV(b []byte) (tlvItem, []byte, error) {
	if len(b) < 2 {
		return tlvItem{}, nil, fmt.Errorf("%w: %d bytes left", errMalformedTLV, len(b))
	}
	tag := uint32(b[0])
	i := 1
	if b[0]&0x1F == 0x1F { // multi-byte tag (ISO/IEC 7816-4 5.2.2.1)
		for {
			if i >= len(b) || i > 3 {
				return tlvItem{}, nil, fmt.Errorf("%w: truncated tag", errMalformedTLV)
			}
			tag = tag<<8 | uint32(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return tlvItem{}, nil, fmt.Errorf("%w: missing length", errMalformedTLV)
	}
	n := int(b[i])
	i++
	if n >= 0x80 {
		k := n & 0x7F
		if k == 0 || k > 3 || i+k > len(b) {
			return tlvItem{}, nil, fmt.Errorf("%w: bad length form %#02x", errMalformedTLV, n)
		}
		n = 0
		for j := 0; j < k; j++ {
			n = n<<8 | int(b[i+j])
		}
		i += k
	}
	if n > len(b)-i {
		return tlvItem{}, nil, fmt.Errorf("%w: length %d exceeds %d remaining bytes", errMalformedTLV, n, len(b)-i)
	}
	return tlvItem{tag: tag, value: b[i : i+n]}, b[i+n:], nil
}

// findTLV returns the value of the first item with tag.
func findTLV(items []tlvItem, tag uint32) ([]byte, bool) {
	for _, it := range items {
		if it.tag == tag {
			return it.value, true
		}
	}
	return nil, false
}

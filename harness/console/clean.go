package console

// cleaner turns raw console bytes into the text that prompts, echoes and
// markers are matched against. It is a byte-at-a-time state machine, so an
// escape sequence or a CR LF split across two reads is handled the same as
// one arriving whole.
//
//   - ANSI/VT100 escape sequences are dropped: CSI (ESC [ ... final, e.g.
//     busybox's ESC[6n cursor query after every prompt), OSC (ESC ] ... BEL
//     or ESC \), charset selection (ESC ( x) and two-byte sequences (ESC 7).
//     An ESC followed by anything else is dropped alone.
//   - Line ends become LF: CR LF, and any run of CRs before an LF (busybox
//     wraps its echo at 80 columns with CR CR LF). A lone CR run followed by
//     text also becomes one LF, so consoles that end lines with CR only
//     still give lines.
//   - Other control characters (NUL, BEL, BS, DEL, ...) are dropped; TAB
//     stays.
type cleaner struct {
	state  int
	n      int  // bytes inside the current sequence, to give up on runaways
	crSeen bool // CRs seen and not yet turned into a line end
}

const (
	stText = iota
	stEsc
	stCSI
	stOSC
	stOSCEsc
	stCharset
)

// Longest escape sequence taken as one; longer ones are noise.
const (
	maxCSI = 32
	maxOSC = 128
)

// feed appends the cleaned form of in to out.
func (c *cleaner) feed(out, in []byte) []byte {
	for _, b := range in {
		out = c.byte(out, b)
	}
	return out
}

func (c *cleaner) byte(out []byte, b byte) []byte {
	switch c.state {
	case stEsc:
		c.state = stText
		switch {
		case b == '[':
			c.state, c.n = stCSI, 0
		case b == ']':
			c.state, c.n = stOSC, 0
		case b == '(' || b == ')' || b == '*' || b == '+':
			c.state = stCharset
		case b == 0x1b:
			c.state = stEsc
		case b >= '0' && b <= '9', b == '=', b == '>', b == 'c', b >= 'D' && b <= 'Z', b == '\\':
			// two-byte sequence: drop both
		default:
			return c.text(out, b) // not a sequence: drop the ESC alone
		}
		return out
	case stCSI:
		switch {
		case b >= 0x20 && b <= 0x3f: // parameter and intermediate bytes
			if c.n++; c.n > maxCSI {
				c.state = stText
			}
			return out
		case b >= 0x40 && b <= 0x7e: // final byte
			c.state = stText
			return out
		default: // malformed: abandon the sequence, keep the byte
			c.state = stText
			return c.text(out, b)
		}
	case stOSC:
		switch {
		case b == 0x07:
			c.state = stText
		case b == '\n': // no real OSC spans lines: this was noise
			c.state = stText
			return c.text(out, b)
		case b == 0x1b:
			c.state = stOSCEsc
		default:
			if c.n++; c.n > maxOSC {
				c.state = stText
			}
		}
		return out
	case stOSCEsc:
		c.state = stText
		if b != '\\' {
			return c.byte(out, b)
		}
		return out
	case stCharset:
		c.state = stText
		return out
	}
	return c.text(out, b)
}

func (c *cleaner) text(out []byte, b byte) []byte {
	switch {
	case b == 0x1b:
		c.state = stEsc
		return out
	case b == '\r':
		c.crSeen = true
		return out
	case b == '\n':
		c.crSeen = false
		return append(out, '\n')
	case b == '\t':
	case b < 0x20 || b == 0x7f:
		return out
	}
	if c.crSeen {
		c.crSeen = false
		out = append(out, '\n')
	}
	return append(out, b)
}

// clean is the one-shot form of cleaner, for tests and small strings.
func clean(s string) string {
	var c cleaner
	return string(c.feed(nil, []byte(s)))
}

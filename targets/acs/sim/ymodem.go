package sim

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"time"
)

// The boot ROM's YMODEM receiver (batch, CRC-16, 128- and 1024-byte blocks).
// Written from the protocol description (Forsberg, "XMODEM/YMODEM Protocol
// Reference"), judged by lrzsz's sb; it shares nothing with the harness.

const (
	ySOH = 0x01
	ySTX = 0x02
	yEOT = 0x04
	yACK = 0x06
	yNAK = 0x15
	yCAN = 0x18
	yC   = 'C'
)

const (
	yPoll     = time.Second      // 'C' (or NAK) after this long without a block
	yNoSender = 60 * time.Second // no sender at all: give up
)

// crcTable holds CRC-16/XMODEM (poly 0x1021, init 0, no reflection) of each
// byte value: a block's CRC is then a lookup per byte, not eight shifts, which
// at 921600 baud would be part of every block's turnaround.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16(p []byte) uint16 {
	var crc uint16
	for _, c := range p {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^c]
	}
	return crc
}

type pktKind int

const (
	pktData pktKind = iota
	pktBad          // damaged block (CRC, complement, cut short): NAK it
	pktEOT
	pktCAN
)

type packet struct {
	kind pktKind
	num  byte
	data []byte
}

// getPacket waits up to wait for the start of a packet; bytes that start
// none are line noise and skipped.
func (b *bootloader) getPacket(wait time.Duration, buf []byte) (packet, error) {
	for {
		c, err := b.readByte(wait)
		if err != nil {
			return packet{}, err
		}
		switch c {
		case ySOH, ySTX:
			n := 128
			if c == ySTX {
				n = 1024
			}
			p := buf[:n+4]
			if err := b.readFull(p, yPoll); err != nil {
				if errors.Is(err, errIdle) {
					return packet{kind: pktBad}, nil // cut short
				}
				return packet{}, err
			}
			data := p[2 : 2+n]
			if p[0]^p[1] != 0xff || crc16(data) != uint16(p[n+2])<<8|uint16(p[n+3]) {
				// Drop the rest of a misframed block before asking again.
				if err := b.purge(100*time.Millisecond, b.d.cfg.LoadyIdle); err != nil {
					return packet{}, err
				}
				return packet{kind: pktBad}, nil
			}
			return packet{kind: pktData, num: p[0], data: data}, nil
		case yEOT:
			return packet{kind: pktEOT}, nil
		case yCAN:
			c2, err := b.readByte(yPoll)
			if errors.Is(err, errPowerCut) {
				return packet{}, err
			}
			if err == nil && c2 == yCAN {
				return packet{kind: pktCAN}, nil
			}
		}
	}
}

type rxResult struct {
	name string
	size int64
	sum  []byte
}

// rxFile is the file being received.
type rxFile struct {
	f       *os.File
	name    string
	size    int64 // from the header; -1 if it gave none
	written int64
	h       hash.Hash
	halfway bool // the half-way fault was looked for
}

func (r *rxFile) write(p []byte) error {
	if r.size >= 0 {
		p = p[:min(int64(len(p)), max(r.size-r.written, 0))]
	}
	if r.written+int64(len(p)) > maxImageSize {
		return fmt.Errorf("image larger than the slot (%d bytes)", maxImageSize)
	}
	if _, err := r.f.Write(p); err != nil {
		return err
	}
	r.h.Write(p)
	r.written += int64(len(p))
	return nil
}

// parseHeader reads block 0: "name\0size [mtime mode ...]".
func parseHeader(data []byte) (name string, size int64) {
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return string(data), -1
	}
	name = string(data[:i])
	rest := data[i+1:]
	if j := bytes.IndexByte(rest, 0); j >= 0 {
		rest = rest[:j]
	}
	f := bytes.Fields(rest)
	if len(f) == 0 {
		return name, -1
	}
	n, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil || n < 0 {
		return name, -1
	}
	return name, n
}

// receive runs one YMODEM batch of one file into path. The file is written
// as blocks arrive. Errors other than errPowerCut are the abort message.
func (b *bootloader) receive(path string) (res rxResult, err error) {
	var (
		cur     *rxFile
		done    *rxResult
		begun   bool // a packet arrived
		want    byte // next block number while in a file
		eots    int  // EOTs seen for the current file
		started = time.Now()
		buf     = make([]byte, 1024+4)
	)
	defer func() {
		if cur != nil {
			cur.f.Close()
		}
	}()
	cancel := func(format string, a ...any) (rxResult, error) {
		b.outb(yCAN, yCAN)
		return rxResult{}, fmt.Errorf("Aborted: "+format, a...)
	}
	b.outb(yC)
	for {
		p, err := b.getPacket(yPoll, buf)
		if errors.Is(err, errPowerCut) {
			return rxResult{}, err
		}
		if err != nil { // idle
			if !begun {
				if time.Since(started) >= yNoSender {
					return rxResult{}, errors.New("Aborted: no sender")
				}
				b.outb(yC)
				continue
			}
			if time.Since(b.lastRx) >= b.d.cfg.LoadyIdle {
				return cancel("timeout")
			}
			// Ask again: for a header or the first block with 'C'.
			if cur == nil || want == 1 {
				b.outb(yC)
			} else {
				b.outb(yNAK)
			}
			continue
		}
		begun = true
		switch p.kind {
		case pktBad:
			b.outb(yNAK)
		case pktCAN:
			return rxResult{}, errors.New("Aborted by sender")
		case pktEOT:
			if cur == nil { // our ACK of the last EOT was lost
				b.outb(yACK)
				continue
			}
			if eots == 0 {
				eots++
				b.outb(yNAK)
				continue
			}
			if err := cur.f.Sync(); err != nil {
				return cancel("cannot write slot: %v", err)
			}
			if err := cur.f.Close(); err != nil {
				cur = nil
				return cancel("cannot write slot: %v", err)
			}
			done = &rxResult{name: cur.name, size: cur.written, sum: cur.h.Sum(nil)}
			cur = nil
			b.outb(yACK, yC)
		case pktData:
			if cur == nil {
				if p.num != 0 {
					if done != nil && p.num == want-1 {
						b.outb(yACK) // the last block again
						continue
					}
					return cancel("block sequence error (got block %d, want header)", p.num)
				}
				if p.data[0] == 0 { // empty header: end of batch
					b.outb(yACK)
					if done == nil {
						return rxResult{}, errors.New("Aborted: empty batch")
					}
					return *done, nil
				}
				if done != nil {
					return cancel("more than one file in the batch")
				}
				name, size := parseHeader(p.data)
				if size > maxImageSize {
					return cancel("image of %d bytes is larger than the slot (%d bytes)", size, maxImageSize)
				}
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return cancel("cannot write slot: %v", err)
				}
				cur = &rxFile{f: f, name: name, size: size, h: sha256.New()}
				want, eots = 1, 0
				b.outb(yACK, yC)
				continue
			}
			switch p.num {
			case want:
				// One-shot fault: the receiver gives up half-way, as a bootloader whose flash
				// erase timed out would. Looked for once, at the block that reaches half-way:
				// the fault is a file, and a lookup per block would be part of every
				// block's turnaround.
				if cur.size > 0 && cur.written >= cur.size/2 && !cur.halfway {
					cur.halfway = true
					if b.d.takeFault(FaultLoadyAbort) {
						return cancel("flash write error at offset %d (fault %s)", cur.written, FaultLoadyAbort)
					}
				}
				if err := cur.write(p.data); err != nil {
					return cancel("cannot write slot: %v", err)
				}
				want++
				b.outb(yACK)
			case want - 1: // a repeat: our ACK was lost
				if want == 1 {
					b.outb(yACK, yC) // the header again
				} else {
					b.outb(yACK)
				}
			default:
				return cancel("block sequence error (got block %d, want %d)", p.num, want)
			}
		}
	}
}

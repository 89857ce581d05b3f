package usb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DfuSe commands, sent as DNLOAD with wValue 0.
const (
	dfuseSetAddress = 0x21
	dfuseErase      = 0x41 // with an address: erase that page; alone: mass erase
	dfuseUnprotect  = 0x92
)

// Segment is a run of equal pages in a DfuSe memory map.
type Segment struct {
	Start    uint32
	PageSize uint32
	Pages    int
	Attr     byte // 'a'..'g': bit 0 readable, bit 1 erasable, bit 2 writable
}

// End is the first address after the segment.
func (s Segment) End() uint64 { return uint64(s.Start) + uint64(s.PageSize)*uint64(s.Pages) }

// Readable, Erasable and Writable decode the attribute letter.
func (s Segment) Readable() bool { return (s.Attr-'a'+1)&1 != 0 }
func (s Segment) Erasable() bool { return (s.Attr-'a'+1)&2 != 0 }
func (s Segment) Writable() bool { return (s.Attr-'a'+1)&4 != 0 }

// MemoryMap is a DfuSe alt-setting name: `@name/0xADDR/N*SIZEu t,.../0xADDR/...`.
type MemoryMap struct {
	Name     string
	Segments []Segment
}

var segmentRE = regexp.MustCompile(`^\s*(\d+)\s*\*\s*(\d+)\s*([BKM ]?)\s*([a-g])\s*$`)

// ParseMemoryMap parses and validates a DfuSe memory map (no overlaps, no empty segments).
func ParseMemoryMap(s string) (MemoryMap, error) {
	bad := func(format string, a ...any) (MemoryMap, error) {
		return MemoryMap{}, fmt.Errorf("DfuSe memory map %q: %s", s, fmt.Sprintf(format, a...))
	}
	if !strings.HasPrefix(s, "@") {
		return bad("does not start with @")
	}
	parts := strings.Split(s[1:], "/")
	if len(parts) < 3 || len(parts)%2 != 1 {
		return bad("want @name/0xADDR/SEGMENTS[/0xADDR/SEGMENTS...]")
	}
	m := MemoryMap{Name: strings.TrimSpace(parts[0])}
	for i := 1; i < len(parts); i += 2 {
		addr, err := strconv.ParseUint(strings.TrimSpace(parts[i]), 0, 32)
		if err != nil {
			return bad("address %q: %v", parts[i], err)
		}
		for _, seg := range strings.Split(parts[i+1], ",") {
			g := segmentRE.FindStringSubmatch(seg)
			if g == nil {
				return bad("segment %q: want N*SIZE[B|K|M]{a-g}", seg)
			}
			n, _ := strconv.Atoi(g[1])
			size, _ := strconv.ParseUint(g[2], 10, 32)
			switch g[3] {
			case "K":
				size <<= 10
			case "M":
				size <<= 20
			}
			if n == 0 || size == 0 || size > 1<<31 {
				return bad("segment %q: empty or too large", seg)
			}
			sg := Segment{Start: uint32(addr), PageSize: uint32(size), Pages: n, Attr: g[4][0]}
			if sg.End() > 1<<32 {
				return bad("segment %q runs past 4 GiB", seg)
			}
			m.Segments = append(m.Segments, sg)
			addr = sg.End()
		}
	}
	for i, a := range m.Segments {
		for _, b := range m.Segments[i+1:] {
			if uint64(a.Start) < b.End() && uint64(b.Start) < a.End() {
				return bad("segments at 0x%08x and 0x%08x overlap", a.Start, b.Start)
			}
		}
	}
	return m, nil
}

// ErasePages checks that [addr, addr+n) lies in writable memory and returns the start of
// every erasable page it touches.
func (m MemoryMap) ErasePages(addr uint32, n int) ([]uint32, error) {
	var pages []uint32
	end := uint64(addr) + uint64(n)
	for a := uint64(addr); a < end; {
		seg, ok := m.segmentAt(a)
		if !ok {
			return nil, fmt.Errorf("%s: address 0x%08x is outside the memory map", m.Name, a)
		}
		if !seg.Writable() {
			return nil, fmt.Errorf("%s: address 0x%08x is in a segment that is not writable (%c)", m.Name, a, seg.Attr)
		}
		page := uint64(seg.Start) + (a-uint64(seg.Start))/uint64(seg.PageSize)*uint64(seg.PageSize)
		if seg.Erasable() {
			pages = append(pages, uint32(page))
		}
		a = page + uint64(seg.PageSize)
	}
	return pages, nil
}

func (m MemoryMap) segmentAt(a uint64) (Segment, bool) {
	for _, s := range m.Segments {
		if a >= uint64(s.Start) && a < s.End() {
			return s, true
		}
	}
	return Segment{}, false
}

// command sends a DfuSe command (DNLOAD wValue 0) and waits for it to complete.
func (d *DFU) command(ctx context.Context, what string, cmd byte, addr uint32, s *Stats) error {
	var b [5]byte
	b[0] = cmd
	binary.LittleEndian.PutUint32(b[1:], addr)
	if err := d.out(reqDnload, 0, b[:]); err != nil {
		return fmt.Errorf("DfuSe %s 0x%08x: %w", what, addr, d.afterStall(err))
	}
	if err := d.waitIdle(ctx, s); err != nil {
		return fmt.Errorf("DfuSe %s 0x%08x: %w", what, addr, err)
	}
	s.Commands++
	return nil
}

// MassEraseTimeout bounds a DfuSe mass erase: a whole flash takes seconds to tens of seconds.
const MassEraseTimeout = 2 * time.Minute

// MassErase erases all of a DfuSe device's flash: the erase command without an address.
func (d *DFU) MassErase(ctx context.Context) error {
	var s Stats
	return d.massErase(ctx, &s)
}

func (d *DFU) massErase(ctx context.Context, s *Stats) error {
	if !d.iface.Func.DfuSe() {
		return fmt.Errorf("mass erase: %s is not a DfuSe device", d.iface)
	}
	if err := d.Idle(); err != nil {
		return fmt.Errorf("mass erase: recover: %w", err)
	}
	if err := d.out(reqDnload, 0, []byte{dfuseErase}); err != nil {
		return fmt.Errorf("DfuSe mass erase: %w", d.afterStall(err))
	}
	if err := d.waitIdleWithin(ctx, s, max(d.BusyTimeout, MassEraseTimeout)); err != nil {
		return fmt.Errorf("DfuSe mass erase: %w", err)
	}
	s.Commands++
	return nil
}

// ReadUnprotect lifts a DfuSe device's read protection. The device then erases all of its flash
// and resets: it leaves the bus once it has acknowledged the command, and comes back as a new
// device (in DFU mode while its boot strap is set), to be opened again.
func (d *DFU) ReadUnprotect(ctx context.Context) error {
	if !d.iface.Func.DfuSe() {
		return fmt.Errorf("read unprotect: %s is not a DfuSe device", d.iface)
	}
	if err := d.Idle(); err != nil {
		return fmt.Errorf("read unprotect: recover: %w", err)
	}
	if err := d.out(reqDnload, 0, []byte{dfuseUnprotect}); err != nil {
		return fmt.Errorf("DfuSe read unprotect: %w", d.afterStall(err))
	}
	st, err := d.GetStatus()
	switch {
	case errors.Is(err, ErrDeviceGone):
		return nil // reset at once
	case err != nil:
		return fmt.Errorf("DfuSe read unprotect: %w", err)
	case st.Status != StatusOK || st.State == DfuError:
		return fmt.Errorf("DfuSe read unprotect: %w", d.failed(st))
	case st.State != DnBusy:
		return fmt.Errorf("DfuSe read unprotect: %w", &StateError{State: st.State, Status: st.Status, Want: "dfuDNBUSY"})
	}
	// Busy erasing; it resets when done and answers nothing more.
	return d.Clock.Sleep(ctx, st.PollTimeout)
}

// maxDfuSeBlocks is how many data blocks follow one set-address: wValue runs 2..0xFFFF.
const maxDfuSeBlocks = 0xFFFF - 1

func (d *DFU) downloadDfuSe(ctx context.Context, data []byte, opts DownloadOptions, s *Stats) error {
	m, err := ParseMemoryMap(d.iface.Name)
	if err != nil {
		return err
	}
	addr := opts.Address
	if addr == 0 {
		addr = m.Segments[0].Start
	}
	pages, err := m.ErasePages(addr, len(data))
	if err != nil {
		return fmt.Errorf("refusing DfuSe download of %d bytes at 0x%08x: %w", len(data), addr, err)
	}
	if opts.MassErase {
		pages = nil
		if err := d.massErase(ctx, s); err != nil {
			return err
		}
	}
	for _, p := range pages {
		if err := d.command(ctx, "erase page", dfuseErase, p, s); err != nil {
			return err
		}
	}
	// Block n is written at address + (n-2)*wTransferSize; a new address every 65534 blocks.
	chunk := maxDfuSeBlocks * int(d.iface.Func.TransferSize)
	for off := 0; off < len(data); off += chunk {
		if err := d.command(ctx, "set address", dfuseSetAddress, addr+uint32(off), s); err != nil {
			return err
		}
		end := min(off+chunk, len(data))
		if err := d.downloadBlocks(ctx, data[off:end], 2, int64(len(data)), opts, s); err != nil {
			return err
		}
	}
	if !opts.Leave {
		s.Manifest = "none"
		return d.Abort()
	}
	if err := d.command(ctx, "set address", dfuseSetAddress, addr, s); err != nil {
		return err
	}
	return d.manifest(ctx, s, true)
}

// UploadFrom reads max bytes of a DfuSe device's memory from addr: set the address
// pointer, ABORT to dfuIDLE, then UPLOAD blocks from wValue 2.
func (d *DFU) UploadFrom(ctx context.Context, addr uint32, max int64) ([]byte, error) {
	if !d.iface.Func.DfuSe() {
		return nil, fmt.Errorf("upload from 0x%08x: %s is not a DfuSe device", addr, d.iface)
	}
	if err := d.Idle(); err != nil {
		return nil, fmt.Errorf("upload: recover: %w", err)
	}
	var s Stats
	if err := d.command(ctx, "set address", dfuseSetAddress, addr, &s); err != nil {
		return nil, err
	}
	if err := d.Abort(); err != nil {
		return nil, err
	}
	return d.Upload(ctx, max)
}

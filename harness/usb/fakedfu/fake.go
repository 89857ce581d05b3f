package fakedfu

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"hilbench/harness/usb"
)

type clock interface{ Now() time.Time }

// Device is the fake. It implements usb.Device; it is safe for concurrent use.
type Device struct {
	mu    sync.Mutex
	cfg   Config
	clock clock

	runtime       bool
	state, status uint8
	gone          bool
	detachUntil   time.Time
	busyUntil     time.Time // end of the current busy period (dfuDNBUSY, dfuMANIFEST)
	nextPoll      time.Time // the host may not GETSTATUS before this
	manifestLeft  int
	leaving       bool
	manifested    bool

	block      int    // data blocks accepted in the current download
	nextNum    uint16 // wValue expected for the next data block
	pending    []byte // the last DNLOAD, acted on at GETSTATUS
	pendingNum uint16
	image      []byte
	done       []byte
	upNum      uint16
	upOff      int

	pointer uint32 // DfuSe address pointer
	pages   []page
	mem     map[uint32][]byte // DfuSe page contents by page start
	erased  map[uint32]bool

	errFired, stallFired bool
	stats                Stats
}

// Stats count what happened to the fake.
type Stats struct {
	Resets, Detaches, Downloads int
	EarlyPolls                  int             // GETSTATUS sent before the bwPollTimeout asked
	AskedPolls                  []time.Duration // non-zero bwPollTimeouts reported, in order
	Violations                  []string        // protocol errors by the host
	Erases                      []uint32        // DfuSe pages erased, in order
	MassErases, Unprotects      int             // DfuSe mass erases and read unprotects
	Left                        bool            // a DfuSe leave happened
}

// New makes a fake device.
func New(cfg Config) (*Device, error) {
	if cfg.TransferSize == 0 {
		cfg.TransferSize = 1024
	}
	if cfg.DetachTimeout == 0 {
		cfg.DetachTimeout = 1000
	}
	if cfg.ErrorStatus == 0 {
		cfg.ErrorStatus = statusErrVerify
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = cfg.ProgramTime
	}
	d := &Device{cfg: cfg, runtime: cfg.Runtime, state: dfuIdle}
	switch {
	case cfg.RealTime:
		d.clock = wallClock{}
	case cfg.Clock != nil:
		d.clock = cfg.Clock
	default:
		d.clock = NewSimClock()
	}
	if cfg.Runtime {
		d.state = appIdle
	}
	if cfg.StartInError {
		d.state, d.status = dfuError, statusErrUnknown
	}
	if cfg.MemoryMap != "" {
		p, err := parsePages(cfg.MemoryMap)
		if err != nil {
			return nil, err
		}
		d.pages, d.mem, d.erased = p, map[uint32][]byte{}, map[uint32]bool{}
	}
	return d, nil
}

// Image is the last image manifested (plain DFU).
func (d *Device) Image() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.done...)
}

// Memory reads n bytes of DfuSe flash at addr (0xFF where erased, 0x00 where never erased).
func (d *Device) Memory(addr uint32, n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]byte, n)
	for i := range out {
		out[i], _ = d.readFlash(addr + uint32(i))
	}
	return out
}

// Stats is a copy of the counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.AskedPolls = append([]time.Duration(nil), s.AskedPolls...)
	s.Violations = append([]string(nil), s.Violations...)
	s.Erases = append([]uint32(nil), s.Erases...)
	return s
}

// State is the current DFU state number, for tests.
func (d *Device) State() uint8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// Runtime tells whether the device presents its application (runtime) interface.
func (d *Device) Runtime() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runtime
}

// Reset is a USB reset.
func (d *Device) Reset() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return usb.ErrDeviceGone
	}
	d.stats.Resets++
	switch {
	case d.runtime && d.state == appDetach && !d.clock.Now().After(d.detachUntil):
		d.enterDFU()
	case d.runtime:
		d.state = appIdle
	case d.state == manifestWaitReset:
		d.runtime, d.state, d.status = true, appIdle, statusOK // the new firmware runs
	default:
		d.enterDFU() // the bootloader restarts; a partial download is lost
	}
	return nil
}

func (d *Device) enterDFU() {
	d.runtime, d.state, d.status = false, dfuIdle, statusOK
	d.pending, d.image, d.block = nil, nil, 0
}

// violation records a host mistake, puts the device in dfuERROR and stalls.
func (d *Device) violation(format string, a ...any) (int, error) {
	d.stats.Violations = append(d.stats.Violations, fmt.Sprintf(format, a...))
	if !d.runtime {
		d.state, d.status = dfuError, statusErrStalled
	}
	return 0, usb.ErrStall
}

// Control serves standard GET_DESCRIPTOR and the DFU class requests.
func (d *Device) Control(rType, req uint8, val, idx uint16, data []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return 0, usb.ErrDeviceGone
	}
	if rType == 0x80 && req == 6 {
		return d.descriptor(val, data)
	}
	if rType&0x7F != 0x21 {
		return d.violation("unsupported request type 0x%02x request %d", rType, req)
	}
	if idx != uint16(d.cfg.Interface) {
		return d.violation("request %d to interface %d, DFU interface is %d", req, idx, d.cfg.Interface)
	}
	in := rType&0x80 != 0
	if in != (req == 2 || req == 3 || req == 5) {
		return d.violation("request %d with wrong direction (bmRequestType 0x%02x)", req, rType)
	}
	if d.runtime {
		return d.runtimeRequest(req, data)
	}
	switch req {
	case 3:
		return d.getStatus(data)
	case 5:
		if len(data) < 1 {
			return d.violation("GETSTATE with wLength 0")
		}
		data[0] = d.state
		return 1, nil
	case 4: // CLRSTATUS
		if d.state != dfuError {
			return d.violation("CLRSTATUS in state %d", d.state)
		}
		d.state, d.status = dfuIdle, statusOK
		d.pending, d.image, d.block = nil, nil, 0
		return 0, nil
	case 6: // ABORT
		switch d.state {
		case dfuIdle, dnloadIdle, uploadIdle, manifestSync:
			d.state = dfuIdle
			d.pending, d.image, d.block = nil, nil, 0
			return 0, nil
		}
		return d.violation("ABORT in state %d", d.state)
	case 1:
		return d.dnload(val, data)
	case 2:
		return d.upload(val, data)
	}
	return d.violation("request %d in DFU mode", req)
}

func (d *Device) runtimeRequest(req uint8, data []byte) (int, error) {
	switch req {
	case 3:
		if d.cfg.RuntimeStall {
			return 0, usb.ErrStall
		}
		return d.reply(data, 0)
	case 5:
		if len(data) < 1 {
			return d.violation("GETSTATE with wLength 0")
		}
		data[0] = d.state
		return 1, nil
	case 0: // DETACH
		d.stats.Detaches++
		d.state = appDetach
		d.detachUntil = d.clock.Now().Add(time.Duration(d.cfg.DetachTimeout) * time.Millisecond)
		if d.cfg.WillDetach {
			d.enterDFU()
		}
		return 0, nil
	}
	return d.violation("request %d in runtime mode", req)
}

func (d *Device) reply(data []byte, poll time.Duration) (int, error) {
	if len(data) < 6 {
		return d.violation("GETSTATUS with wLength %d", len(data))
	}
	ms := uint32((poll + time.Millisecond - 1) / time.Millisecond)
	data[0] = d.status
	data[1], data[2], data[3] = byte(ms), byte(ms>>8), byte(ms>>16)
	data[4], data[5] = d.state, 0
	if poll > 0 {
		d.stats.AskedPolls = append(d.stats.AskedPolls, time.Duration(ms)*time.Millisecond)
		d.nextPoll = d.clock.Now().Add(time.Duration(ms) * time.Millisecond)
	}
	return 6, nil
}

func (d *Device) dnload(num uint16, data []byte) (int, error) {
	if d.state != dfuIdle && d.state != dnloadIdle {
		return d.violation("DNLOAD in state %d", d.state)
	}
	if len(data) > d.cfg.TransferSize {
		return d.violation("DNLOAD of %d bytes, wTransferSize is %d", len(data), d.cfg.TransferSize)
	}
	if len(data) == 0 {
		if d.state != dnloadIdle {
			return d.violation("zero-length DNLOAD in dfuIDLE")
		}
		d.state, d.leaving = manifestSync, d.pages != nil
		return 0, nil
	}
	if d.state == dfuIdle {
		d.image, d.block, d.nextNum = nil, 0, 0
		if d.pages != nil {
			d.nextNum = 2
		}
	}
	isData := d.pages == nil || num >= 2
	if isData {
		if d.cfg.StallOnBlock == d.block+1 && !d.stallFired {
			d.stallFired = true
			d.state, d.status = dfuError, statusErrStalled
			return 0, usb.ErrStall
		}
		if d.pages == nil && num != d.nextNum {
			return d.violation("DNLOAD block number %d, want %d", num, d.nextNum)
		}
	} else if num == 1 {
		return d.violation("DfuSe DNLOAD with wValue 1")
	}
	d.pending, d.pendingNum = append(d.pending[:0], data...), num
	d.state = dnloadSync
	return len(data), nil
}

func (d *Device) upload(num uint16, data []byte) (int, error) {
	if d.state != dfuIdle && d.state != uploadIdle {
		return d.violation("UPLOAD in state %d", d.state)
	}
	if d.cfg.UploadData == nil && d.pages == nil {
		return d.violation("UPLOAD on a device without bitCanUpload")
	}
	if len(data) > d.cfg.TransferSize {
		return d.violation("UPLOAD of %d bytes, wTransferSize is %d", len(data), d.cfg.TransferSize)
	}
	if d.state == dfuIdle {
		d.upOff, d.upNum = 0, 0
		if d.pages != nil {
			d.upNum = 2
		}
	}
	if num != d.upNum {
		return d.violation("UPLOAD block number %d, want %d", num, d.upNum)
	}
	d.upNum++
	d.state = uploadIdle
	if d.pages != nil {
		base := d.pointer + uint32(int(num)-2)*uint32(d.cfg.TransferSize)
		for i := range data {
			b, ok := d.readFlash(base + uint32(i))
			if !ok {
				d.state = dfuIdle
				return i, nil
			}
			data[i] = b
		}
		return len(data), nil
	}
	n := copy(data, d.cfg.UploadData[d.upOff:])
	d.upOff += n
	if n < len(data) {
		d.state = dfuIdle
	}
	return n, nil
}

// descriptor serves device, configuration and string descriptors.
func (d *Device) descriptor(val uint16, data []byte) (int, error) {
	var b []byte
	switch typ, index := val>>8, uint8(val); typ {
	case 1:
		b = []byte{18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x83, 0x04, 0x11, 0xdf, 0x00, 0x02, 1, 2, 3, 1}
	case 2:
		b = d.configDescriptor()
	case 3:
		s, ok := d.stringDescriptor(index)
		if !ok {
			return d.violation("string descriptor %d does not exist", index)
		}
		b = s
	default:
		return d.violation("descriptor type %d", typ)
	}
	return copy(data, b), nil
}

func (d *Device) altNames() []string {
	if d.cfg.MemoryMap != "" {
		return []string{d.cfg.MemoryMap}
	}
	return []string{"Fake Flash"}
}

func (d *Device) configDescriptor() []byte {
	proto := byte(2)
	if d.runtime {
		proto = 1
	}
	b := []byte{9, 2, 0, 0, 1, 1, 0, 0x80, 50}
	for i := range d.altNames() {
		b = append(b, 9, 4, d.cfg.Interface, byte(i), 0, 0xFE, 0x01, proto, byte(4+i))
	}
	attr := byte(1)
	if d.cfg.UploadData != nil || d.pages != nil {
		attr |= 2
	}
	if d.cfg.ManifestationTolerant {
		attr |= 4
	}
	if d.cfg.WillDetach {
		attr |= 8
	}
	version := uint16(0x0110)
	if d.pages != nil {
		version = 0x011A
	}
	b = append(b, 9, 0x21, attr)
	b = binary.LittleEndian.AppendUint16(b, d.cfg.DetachTimeout)
	b = binary.LittleEndian.AppendUint16(b, uint16(d.cfg.TransferSize))
	b = binary.LittleEndian.AppendUint16(b, version)
	binary.LittleEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func (d *Device) stringDescriptor(i uint8) ([]byte, bool) {
	var s string
	names := d.altNames()
	switch {
	case i == 0:
		return []byte{4, 3, 0x09, 0x04}, true
	case i == 1:
		s = "hilbench"
	case i == 2:
		s = "fake DFU device"
	case i == 3:
		s = "FAKE0001"
	case int(i)-4 < len(names):
		s = names[i-4]
	default:
		return nil, false
	}
	b := []byte{0, 3}
	for _, r := range s {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	b[0] = byte(len(b))
	return b, true
}

package usb

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"syscall"
)

// usbmon capture (LINKTYPE_USB_LINUX_MMAPPED, 64-byte headers) for `umockdev-run --pcap`.
const (
	linktypeUSBMmapped = 220
	urbControl         = 2
)

// WriteUsbmonPcap turns a recording into a usbmon capture of device bus/dev that
// `umockdev-run --device D.umockdev --pcap SYSFS=FILE` replays to libusb, so the gousb
// adapter runs end to end without hardware. Resets cannot be replayed that way.
func WriteUsbmonPcap(p *Playback, w io.Writer, bus, dev int) error {
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], linktypeUSBMmapped)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for i, s := range p.steps {
		if s.kind == "reset" {
			return fmt.Errorf("recording line %d: a USB reset cannot be replayed from a usbmon capture", s.line)
		}
		var setup [8]byte
		setup[0], setup[1] = s.rType, s.req
		binary.LittleEndian.PutUint16(setup[2:], s.val)
		binary.LittleEndian.PutUint16(setup[4:], s.idx)
		status := int32(0)
		switch s.result {
		case "":
		case "STALL":
			status = -int32(syscall.EPIPE)
		case "GONE":
			status = -int32(syscall.ENODEV)
		default:
			status = -int32(syscall.EPROTO)
		}
		ep := byte(0)
		var sub, done []byte
		length := uint32(len(s.data))
		if s.kind == "in" {
			ep, length, done = 0x80, uint32(s.length), s.data
		} else {
			sub = s.data
		}
		binary.LittleEndian.PutUint16(setup[6:], uint16(length))
		id := uint64(i + 1)
		ts := int64(i + 1)
		if err := usbmonPacket(w, id, 'S', ep, bus, dev, setup[:], sub, -int32(syscall.EINPROGRESS), length, ts); err != nil {
			return err
		}
		actual := uint32(len(s.data))
		if status != 0 {
			actual, done = 0, nil
		}
		if err := usbmonPacket(w, id, 'C', ep, bus, dev, nil, done, status, actual, ts); err != nil {
			return err
		}
	}
	return nil
}

func usbmonPacket(w io.Writer, id uint64, typ, ep byte, bus, dev int, setup, data []byte, status int32, length uint32, ts int64) error {
	b := make([]byte, 16+64+len(data))
	binary.LittleEndian.PutUint32(b[0:], uint32(ts))
	binary.LittleEndian.PutUint32(b[8:], uint32(64+len(data)))
	binary.LittleEndian.PutUint32(b[12:], uint32(64+len(data)))
	h := b[16:]
	binary.LittleEndian.PutUint64(h[0:], id)
	h[8], h[9], h[10], h[11] = typ, urbControl, ep, byte(dev)
	binary.LittleEndian.PutUint16(h[12:], uint16(bus))
	h[14], h[15] = '-', '<' // no setup, no data unless set below
	if setup != nil {
		h[14] = 0
		copy(h[40:48], setup)
	}
	if len(data) > 0 {
		h[15] = 0
	} else if ep&0x80 == 0 {
		h[15] = '>'
	}
	binary.LittleEndian.PutUint64(h[16:], uint64(ts))
	binary.LittleEndian.PutUint32(h[28:], uint32(status))
	binary.LittleEndian.PutUint32(h[32:], length)
	binary.LittleEndian.PutUint32(h[36:], uint32(len(data)))
	copy(b[80:], data)
	_, err := w.Write(b)
	return err
}

// WriteUmockdevDevice writes a umockdev device description (`umockdev-run --device`) of a
// full-speed USB device at sysfs path sys (e.g. /devices/pci0000:00/0000:00:14.0/usb1/1-1),
// bus/dev, with the device and configuration descriptors read from c.
func WriteUmockdevDevice(w io.Writer, c Control, sys string, bus, dev int) error {
	devDesc, err := ReadDescriptor(c, descDevice, 0, 0, 18)
	if err != nil {
		return err
	}
	if len(devDesc) != 18 {
		return fmt.Errorf("device descriptor: %d bytes, want 18", len(devDesc))
	}
	cfg, err := ReadConfig(c, 0)
	if err != nil {
		return err
	}
	vid, pid := binary.LittleEndian.Uint16(devDesc[8:]), binary.LittleEndian.Uint16(devDesc[10:])
	_, err = fmt.Fprintf(w, `P: %s
N: bus/usb/%03d/%03d
E: DEVNAME=/dev/bus/usb/%03d/%03d
E: DEVTYPE=usb_device
E: DRIVER=usb
E: PRODUCT=%x/%x/%x
E: BUSNUM=%03d
E: DEVNUM=%03d
E: MAJOR=189
E: MINOR=%d
E: SUBSYSTEM=usb
A: bConfigurationValue=%d
A: bNumConfigurations=1
A: busnum=%d
A: devnum=%d
A: idVendor=%04x
A: idProduct=%04x
A: speed=12
H: descriptors=%s
`, sys, bus, dev, bus, dev, vid, pid, binary.LittleEndian.Uint16(devDesc[12:]), bus, dev,
		(bus-1)*128+dev-1, cfg[5], bus, dev, vid, pid, hex.EncodeToString(append(devDesc, cfg...)))
	return err
}

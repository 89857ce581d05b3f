package usb

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// Descriptor types.
const (
	descDevice     = 1
	descConfig     = 2
	descString     = 3
	descInterface  = 4
	descDFUFunc    = 0x21
	dfuClass       = 0xFE
	dfuSubclass    = 0x01
	ProtoRuntime   = 1 // bInterfaceProtocol of a DFU interface in the application
	ProtoDFUMode   = 2 // bInterfaceProtocol of a DFU interface in DFU mode
	dfuSeVersion   = 0x011A
	langEnglishUS  = 0x0409
	maxDescriptor  = 255
	maxConfigBytes = 4096
)

// Functional is the DFU functional descriptor (type 0x21).
type Functional struct {
	Attributes    uint8  // bmAttributes
	DetachTimeout uint16 // wDetachTimeOut, milliseconds
	TransferSize  uint16 // wTransferSize, bytes per DNLOAD/UPLOAD block
	Version       uint16 // bcdDFUVersion; 0x011A is ST's DfuSe
}

// CanDownload is bitCanDnload.
func (f Functional) CanDownload() bool { return f.Attributes&1 != 0 }

// CanUpload is bitCanUpload.
func (f Functional) CanUpload() bool { return f.Attributes&2 != 0 }

// ManifestationTolerant is bitManifestationTolerant: the device stays usable after manifestation.
func (f Functional) ManifestationTolerant() bool { return f.Attributes&4 != 0 }

// WillDetach is bitWillDetach: the device detaches itself after DETACH (no USB reset needed).
func (f Functional) WillDetach() bool { return f.Attributes&8 != 0 }

// DfuSe tells an ST DfuSe device (bcdDFUVersion 0x011A).
func (f Functional) DfuSe() bool { return f.Version == dfuSeVersion }

// Interface is one alternate setting of a DFU interface.
type Interface struct {
	Config   uint8 // bConfigurationValue
	Number   uint8 // bInterfaceNumber, the wIndex of DFU requests
	Alt      uint8 // bAlternateSetting
	Protocol uint8 // ProtoRuntime or ProtoDFUMode
	Name     string
	Func     Functional
}

// Runtime tells an application's DFU interface (DETACH needed before a download).
func (i Interface) Runtime() bool { return i.Protocol == ProtoRuntime }

func (i Interface) String() string {
	mode := "DFU mode"
	if i.Runtime() {
		mode = "runtime"
	}
	return fmt.Sprintf("interface %d alt %d (%s, %q)", i.Number, i.Alt, mode, i.Name)
}

// ReadDescriptor reads descriptor typ/index with GET_DESCRIPTOR into a buffer of n bytes.
func ReadDescriptor(c Control, typ, index uint8, lang uint16, n int) ([]byte, error) {
	buf := make([]byte, n)
	got, err := c.Control(reqTypeStdIn, reqGetDescr, uint16(typ)<<8|uint16(index), lang, buf)
	if err != nil {
		return nil, fmt.Errorf("GET_DESCRIPTOR type 0x%02x index %d: %w", typ, index, err)
	}
	return buf[:got], nil
}

// ReadString reads string descriptor index in the device's first language.
func ReadString(c Control, index uint8) (string, error) {
	if index == 0 {
		return "", nil
	}
	langs, err := ReadDescriptor(c, descString, 0, 0, maxDescriptor)
	if err != nil {
		return "", err
	}
	lang := uint16(langEnglishUS)
	if len(langs) >= 4 {
		lang = binary.LittleEndian.Uint16(langs[2:])
	}
	b, err := ReadDescriptor(c, descString, index, lang, maxDescriptor)
	if err != nil {
		return "", err
	}
	if len(b) < 2 || b[1] != descString || int(b[0]) > len(b) {
		return "", fmt.Errorf("string descriptor %d: malformed (% x)", index, b)
	}
	b = b[2:b[0]]
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// ReadConfig reads configuration descriptor index, all wTotalLength bytes of it.
func ReadConfig(c Control, index uint8) ([]byte, error) {
	head, err := ReadDescriptor(c, descConfig, index, 0, 9)
	if err != nil {
		return nil, err
	}
	if len(head) < 4 || head[1] != descConfig {
		return nil, fmt.Errorf("configuration descriptor %d: malformed header (% x)", index, head)
	}
	total := int(binary.LittleEndian.Uint16(head[2:]))
	if total < 9 || total > maxConfigBytes {
		return nil, fmt.Errorf("configuration descriptor %d: wTotalLength %d out of range", index, total)
	}
	full, err := ReadDescriptor(c, descConfig, index, 0, total)
	if err != nil {
		return nil, err
	}
	if len(full) != total {
		return nil, fmt.Errorf("configuration descriptor %d: got %d of %d bytes", index, len(full), total)
	}
	return full, nil
}

// ParseDFUInterfaces finds the DFU interfaces (class FE subclass 01) in a raw configuration
// descriptor. A functional descriptor applies to the alt settings of its interface; devices
// often give it once, after the last alt setting.
func ParseDFUInterfaces(cfg []byte) ([]Interface, []uint8, error) {
	if len(cfg) < 9 || cfg[1] != descConfig {
		return nil, nil, fmt.Errorf("not a configuration descriptor")
	}
	var out []Interface
	var nameIdx []uint8
	var fn *Functional
	cur := -1 // index in out of the last DFU alt setting, -1 when inside another interface
	for p := 0; p < len(cfg); {
		l := int(cfg[p])
		if l < 2 || p+l > len(cfg) {
			return nil, nil, fmt.Errorf("configuration descriptor: bad descriptor length %d at byte %d", l, p)
		}
		d := cfg[p : p+l]
		switch d[1] {
		case descInterface:
			if l < 9 {
				return nil, nil, fmt.Errorf("interface descriptor at byte %d: %d bytes, want 9", p, l)
			}
			cur = -1
			if d[5] == dfuClass && d[6] == dfuSubclass {
				out = append(out, Interface{Config: cfg[5], Number: d[2], Alt: d[3], Protocol: d[7]})
				nameIdx = append(nameIdx, d[8])
				cur = len(out) - 1
			}
		case descDFUFunc:
			if cur < 0 {
				break
			}
			if l < 7 {
				return nil, nil, fmt.Errorf("DFU functional descriptor at byte %d: %d bytes, want 9", p, l)
			}
			f := Functional{Attributes: d[2], DetachTimeout: binary.LittleEndian.Uint16(d[3:]),
				TransferSize: binary.LittleEndian.Uint16(d[5:]), Version: 0x0100}
			if l >= 9 {
				f.Version = binary.LittleEndian.Uint16(d[7:])
			}
			fn = &f
			for i := range out {
				if out[i].Number == out[cur].Number {
					out[i].Func = f
				}
			}
		}
		p += l
	}
	if len(out) > 0 && fn == nil {
		return nil, nil, fmt.Errorf("DFU interface %d has no functional descriptor", out[0].Number)
	}
	return out, nameIdx, nil
}

// FindInterfaces reads configuration descriptor 0 and the alt-setting names over c and
// returns the DFU interfaces.
func FindInterfaces(c Control) ([]Interface, error) {
	cfg, err := ReadConfig(c, 0)
	if err != nil {
		return nil, err
	}
	ifs, names, err := ParseDFUInterfaces(cfg)
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		if ifs[i].Name, err = ReadString(c, names[i]); err != nil {
			return nil, fmt.Errorf("name of %s: %w", ifs[i], err)
		}
	}
	return ifs, nil
}

package usb_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"hilbench/harness/usb"
	"hilbench/harness/usb/fakedfu"
)

const stm32F4 = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg"

func TestParseMemoryMap(t *testing.T) {
	m, err := usb.ParseMemoryMap(stm32F4)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Internal Flash" || len(m.Segments) != 3 {
		t.Fatalf("%+v", m)
	}
	s := m.Segments[2]
	if s.Start != 0x08020000 || s.PageSize != 128<<10 || s.Pages != 7 || !s.Writable() || !s.Erasable() || !s.Readable() {
		t.Fatalf("segment %+v", s)
	}
	m, err = usb.ParseMemoryMap("@Option Bytes  /0x1FFFC000/01*016 e/0x1FFEC000/01*016 a")
	if err != nil || len(m.Segments) != 2 || m.Segments[1].Writable() || m.Segments[0].Erasable() {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{
		"Internal Flash/0x08000000/04*016Kg",             // no @
		"@Internal Flash/0x08000000",                     // no segments
		"@Flash/zz/04*016Kg",                             // address
		"@Flash/0x08000000/04*016Kh",                     // attribute
		"@Flash/0x08000000/00*016Kg",                     // empty
		"@Flash/0x08000000/04*016Kg/0x08004000/01*016Kg", // overlap
		"@Flash/0xFFFFF000/04*016Kg",                     // past 4 GiB
	} {
		if _, err := usb.ParseMemoryMap(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestDfuSeDownload(t *testing.T) {
	r := newRig(t, fakedfu.Config{MemoryMap: stm32F4, TransferSize: 2048, ProgramTime: 2 * time.Millisecond})
	if !r.dfu.Interface().Func.DfuSe() {
		t.Fatal("fake is not DfuSe")
	}
	data := image(70000, 20) // 16K pages 0..3 and the 64K page at 0x08010000
	addr := uint32(0x08004000)
	s := mustDownload(t, r, data, usb.DownloadOptions{Address: addr})
	sameBytes(t, "flash", r.fake.Memory(addr, len(data)), data)
	want := []uint32{0x08004000, 0x08008000, 0x0800C000, 0x08010000}
	got := r.fake.Stats().Erases
	if len(got) != len(want) {
		t.Fatalf("erased %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("erased %x, want %x", got, want)
		}
	}
	if s.Commands != 5 || s.Manifest != "none" || usb.State(r.fake.State()) != usb.DfuIdle {
		t.Fatalf("stats %+v, state %v", s, usb.State(r.fake.State()))
	}
	r.clean(t)
	r.honoured(t)

	up, err := r.dfu.UploadFrom(context.Background(), addr+100, int64(len(data)-100))
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "upload", up, data[100:])
	r.clean(t)
}

func TestDfuSeManyBlocks(t *testing.T) {
	// 70000 blocks of 16 bytes: wValue runs out at 0xFFFF and a new set-address follows.
	r := newRig(t, fakedfu.Config{MemoryMap: "@Flash /0x08000000/02*1Mg", TransferSize: 16})
	data := image(70000*16, 23)
	s := mustDownload(t, r, data, usb.DownloadOptions{})
	sameBytes(t, "flash", r.fake.Memory(0x08000000, len(data)), data)
	if s.Blocks != 70000 || s.Commands != 2+2 {
		t.Fatalf("stats %+v", s)
	}
	r.clean(t)
}

func TestDfuSeLeave(t *testing.T) {
	r := newRig(t, fakedfu.Config{MemoryMap: stm32F4})
	data := image(1000, 21)
	s := mustDownload(t, r, data, usb.DownloadOptions{Leave: true})
	if !r.fake.Stats().Left || s.Manifest != "left" {
		t.Fatalf("manifest %q, left %v", s.Manifest, r.fake.Stats().Left)
	}
	sameBytes(t, "flash", r.fake.Memory(0x08000000, len(data)), data)
	r.clean(t)
}

func TestDfuSeRefusesUnwritable(t *testing.T) {
	r := newRig(t, fakedfu.Config{MemoryMap: "@Flash /0x08000000/02*016Kg/0x08010000/01*016Ka"})
	for _, tc := range []struct {
		addr uint32
		n    int
		want string
	}{
		{0x08010000, 100, "0x08010000 is in a segment that is not writable (a)"},
		{0x08007000, 8192, "0x08008000 is outside the memory map"},
		{0x07FFFFFF, 10, "0x07ffffff is outside the memory map"},
	} {
		_, err := r.dfu.Download(context.Background(), image(tc.n, 22), usb.DownloadOptions{Address: tc.addr})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("0x%08x: error %v, want %q", tc.addr, err, tc.want)
		}
	}
	if len(r.fake.Stats().Erases) != 0 {
		t.Fatal("refused download erased pages")
	}
	r.clean(t)
}

func TestDfuSeMassErase(t *testing.T) {
	const m = "@Flash /0x08000000/04*016Kg/0x08010000/01*016Ka"
	r := newRig(t, fakedfu.Config{MemoryMap: m, TransferSize: 2048, ProgramTime: 2 * time.Millisecond})
	old := image(4*16<<10, 30) // fill every erasable page with an older firmware
	mustDownload(t, r, old, usb.DownloadOptions{})
	data := image(5000, 31)
	s := mustDownload(t, r, data, usb.DownloadOptions{MassErase: true})
	if st := r.fake.Stats(); st.MassErases != 1 || len(st.Erases) != 4 {
		t.Fatalf("mass erases %d, page erases %x; want 1 mass erase and only the first download's 4 pages", st.MassErases, st.Erases)
	}
	sameBytes(t, "flash", r.fake.Memory(0x08000000, len(data)), data)
	// Nothing of the older firmware stays behind, not even past the new image.
	sameBytes(t, "rest of flash", r.fake.Memory(0x08000000+uint32(len(data)), 4*16<<10-len(data)), bytes.Repeat([]byte{0xFF}, 4*16<<10-len(data)))
	if s.Commands != 2 { // the mass erase and one set-address
		t.Fatalf("stats %+v", s)
	}
	r.clean(t)
	r.honoured(t)

	plain := newRig(t, fakedfu.Config{})
	if err := plain.dfu.MassErase(context.Background()); err == nil || !strings.Contains(err.Error(), "not a DfuSe device") {
		t.Fatalf("mass erase of a plain DFU device: %v", err)
	}
}

func TestDfuSeReadUnprotect(t *testing.T) {
	r := newRig(t, fakedfu.Config{MemoryMap: stm32F4, ProgramTime: 5 * time.Millisecond})
	mustDownload(t, r, image(40000, 32), usb.DownloadOptions{})
	if err := r.dfu.ReadUnprotect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := r.fake.Stats(); st.Unprotects != 1 {
		t.Fatalf("unprotects %d", st.Unprotects)
	}
	sameBytes(t, "flash", r.fake.Memory(0x08000000, 40000), bytes.Repeat([]byte{0xFF}, 40000))
	// The device reset: the handle is dead until the device is opened again.
	if _, err := r.dfu.GetStatus(); !errors.Is(err, usb.ErrDeviceGone) {
		t.Fatalf("GETSTATUS after unprotect: %v, want the device gone", err)
	}
	r.clean(t)
}

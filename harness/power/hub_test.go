package power

import (
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"

	"hilbench/harness/usb"
)

// switchLog is shared by fake hubs so tests see the order across companions.
type switchLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *switchLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, s)
}

func (l *switchLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.ops, " ")
}

// fakeHub answers the hub class requests uhubctl uses.
type fakeHub struct {
	loc     string
	usb3    bool
	chars   uint16 // wHubCharacteristics: &3 == 1 per-port
	powered []bool // index 0 unused
	log     *switchLog
}

func newFakeHub(loc string, usb3 bool, chars uint16, ports int, log *switchLog) *fakeHub {
	h := &fakeHub{loc: loc, usb3: usb3, chars: chars, powered: make([]bool, ports+1), log: log}
	for i := range h.powered {
		h.powered[i] = true
	}
	return h
}

func (h *fakeHub) info(vendor uint16) HubInfo {
	return HubInfo{Location: h.loc, USB3: h.usb3, Vendor: vendor, Ctl: h}
}

func (h *fakeHub) Control(rType, req uint8, val, idx uint16, data []byte) (int, error) {
	ports := len(h.powered) - 1
	switch {
	case rType == 0xA0 && req == 6:
		want := uint16(0x29)
		if h.usb3 {
			want = 0x2A
		}
		if val != want<<8 {
			return 0, usb.ErrStall
		}
		d := []byte{9, 0x29, byte(ports), 0, 0, 50, 100, 0, 0xff}
		if h.usb3 {
			d = []byte{12, 0x2A, byte(ports), 0, 0, 50, 0, 0, 0, 0, 0, 0}
		}
		binary.LittleEndian.PutUint16(d[3:], h.chars)
		return copy(data, d), nil
	case int(idx) < 1 || int(idx) > ports:
		return 0, usb.ErrStall
	case rType == 0xA3 && req == 0:
		st := uint16(0x0001) // connected
		if h.powered[idx] {
			st |= 0x0100
			if h.usb3 {
				st = st&^0x0100 | 0x0200
			}
		}
		binary.LittleEndian.PutUint16(data, st)
		return 4, nil
	case rType == 0x23 && (req == 1 || req == 3) && val == 8:
		h.powered[idx] = req == 3
		what := "off"
		if req == 3 {
			what = "on"
		}
		h.log.add(h.loc + ":" + what)
		return 0, nil
	}
	return 0, usb.ErrStall
}

func testHubPort(t *testing.T, hubs []HubInfo, loc string, port int) (*HubPort, *[]time.Duration) {
	t.Helper()
	p, err := NewHubPort(hubs, loc, port, 0)
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	p.sleep = func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}
	return p, &slept
}

func TestHubPerPort(t *testing.T) {
	log := &switchLog{}
	h := newFakeHub("1-1", false, 0x0009, 4, log)
	p, slept := testHubPort(t, []HubInfo{h.info(0x0424)}, "1-1", 3)
	ctx := context.Background()
	if err := p.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := p.State(ctx); s != Off || err != nil || h.powered[3] || !h.powered[2] {
		t.Fatalf("after Off: %v %v %v", s, err, h.powered)
	}
	if err := p.Off(ctx); err != nil { // already off: nothing sent
		t.Fatal(err)
	}
	if err := p.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := p.State(ctx); s != On {
		t.Fatalf("after Cycle: %v", s)
	}
	if got := log.String(); got != "1-1:off 1-1:on" {
		t.Fatalf("switched %s", got)
	}
	if len(*slept) != 1 || (*slept)[0] != DefaultOffTime {
		t.Fatalf("slept %v", *slept)
	}
}

func TestHubRefused(t *testing.T) {
	log := &switchLog{}
	for _, tc := range []struct {
		chars uint16
		port  int
		want  string
	}{
		{0x0000, 1, "hub 1-2 (USB2): no per-port power switching (ganged"},
		{0x0002, 1, "hub 1-2 (USB2): no power switching"},
		{0x0001, 5, "hub 1-2 (USB2): port 5 does not exist (ports 1..4)"},
	} {
		h := newFakeHub("1-2", false, tc.chars, 4, log)
		_, err := NewHubPort([]HubInfo{h.info(1)}, "1-2", tc.port, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("chars %#x port %d: %v, want %q", tc.chars, tc.port, err, tc.want)
		}
	}
	_, err := NewHubPort([]HubInfo{newFakeHub("1-2", false, 1, 4, log).info(1)}, "3-1", 1, 0)
	if err == nil || !strings.Contains(err.Error(), "no hub at 3-1 (hubs: 1-2)") {
		t.Errorf("unknown location: %v", err)
	}
	if log.String() != "" {
		t.Errorf("refused hubs were switched: %s", log)
	}
}

func TestHubUSB3Companion(t *testing.T) {
	log := &switchLog{}
	usb2 := newFakeHub("1-1.4", false, 0x0001, 4, log)
	usb3 := newFakeHub("2-1.4", true, 0x0001, 4, log)
	other := newFakeHub("2-1.3", true, 0x0001, 4, log)
	foreign := newFakeHub("3-1.4", true, 0x0001, 4, log) // same path, another vendor
	hubs := []HubInfo{usb2.info(0x2109), other.info(0x2109), foreign.info(0x05e3), usb3.info(0x2109)}
	for _, loc := range []string{"1-1.4", "2-1.4"} {
		t.Run(loc, func(t *testing.T) {
			log.ops = nil
			p, slept := testHubPort(t, hubs, loc, 2)
			ctx := context.Background()
			if err := p.Off(ctx); err != nil {
				t.Fatal(err)
			}
			if s, _ := p.State(ctx); s != Off {
				t.Fatalf("state %v", s)
			}
			if err := p.On(ctx); err != nil {
				t.Fatal(err)
			}
			if got := log.String(); got != "2-1.4:off 1-1.4:off 1-1.4:on 2-1.4:on" {
				t.Fatalf("switched %s", got)
			}
			if len(*slept) != 1 || (*slept)[0] != usb3OffSettle {
				t.Fatalf("slept %v, want uhubctl's USB3 settle", *slept)
			}
			usb3.powered[2] = false
			if s, _ := p.State(ctx); s != Unknown {
				t.Fatalf("companions disagree, state %v", s)
			}
			usb3.powered[2] = true
		})
	}
}

func TestHubLocation(t *testing.T) {
	if got := location(1, nil); got != "1" {
		t.Error(got)
	}
	if got := location(2, []int{1, 4, 3}); got != "2-1.4.3" {
		t.Error(got)
	}
}

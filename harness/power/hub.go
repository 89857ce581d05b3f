package power

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"hilbench/harness/usb"
)

// HubInfo is a USB hub as found on the buses.
type HubInfo struct {
	Location string // uhubctl style: bus, then the port path: "1-1.4"; a root hub is "1"
	USB3     bool
	Vendor   uint16
	Ctl      usb.Control
}

// Hub requests (USB 2.0 11.24, USB 3.2 10.14).
const (
	hubGetDescriptor = 0xA0 // device-to-host, class, device
	hubGetStatus     = 0xA3 // device-to-host, class, other (port)
	hubSetPortReq    = 0x23 // host-to-device, class, other (port)
	reqClearFeature  = 1
	reqSetFeature    = 3
	featPortPower    = 8
	descHub          = 0x29
	descSSHub        = 0x2A
	powerUSB2        = 0x0100
	powerUSB3        = 0x0200
)

// usb3OffSettle is uhubctl's extra wait after switching a USB3 hub's port off.
const usb3OffSettle = 150 * time.Millisecond

// hub is one hub checked for per-port power switching.
type hub struct {
	HubInfo
	ports int
}

func (h HubInfo) name() string {
	v := "USB2"
	if h.USB3 {
		v = "USB3"
	}
	return fmt.Sprintf("hub %s (%s)", h.Location, v)
}

// checkHub reads the hub descriptor and refuses hubs that cannot switch one port.
func checkHub(h HubInfo, port int) (hub, error) {
	typ := uint16(descHub)
	if h.USB3 {
		typ = descSSHub
	}
	b := make([]byte, 12)
	n, err := h.Ctl.Control(hubGetDescriptor, 6, typ<<8, 0, b)
	if err != nil {
		return hub{}, fmt.Errorf("%s: hub descriptor: %w", h.name(), err)
	}
	if n < 5 {
		return hub{}, fmt.Errorf("%s: hub descriptor: %d bytes", h.name(), n)
	}
	ports, chars := int(b[2]), binary.LittleEndian.Uint16(b[3:])
	switch chars & 3 {
	case 1:
	case 0:
		return hub{}, fmt.Errorf("%s: no per-port power switching (ganged: all ports switch together)", h.name())
	default:
		return hub{}, fmt.Errorf("%s: no power switching", h.name())
	}
	if port < 1 || port > ports {
		return hub{}, fmt.Errorf("%s: port %d does not exist (ports 1..%d)", h.name(), port, ports)
	}
	return hub{HubInfo: h, ports: ports}, nil
}

func (h hub) powered(port int) (bool, error) {
	b := make([]byte, 4)
	n, err := h.Ctl.Control(hubGetStatus, 0, 0, uint16(port), b)
	if err != nil || n < 4 {
		return false, fmt.Errorf("%s port %d: GET_STATUS: %d bytes, %v", h.name(), port, n, err)
	}
	bit := uint16(powerUSB2)
	if h.USB3 {
		bit = powerUSB3
	}
	return binary.LittleEndian.Uint16(b)&bit != 0, nil
}

func (h hub) set(port int, on bool) error {
	req, what := uint8(reqClearFeature), "off"
	if on {
		req, what = reqSetFeature, "on"
	}
	if _, err := h.Ctl.Control(hubSetPortReq, req, featPortPower, uint16(port), nil); err != nil {
		return fmt.Errorf("%s port %d: power %s: %w", h.name(), port, what, err)
	}
	return nil
}

// HubPort is one port of a hub with per-port power switching, and the same port of its
// USB2/USB3 companion hub when it has one: a USB3 hub is two hubs, both must switch.
type HubPort struct {
	hubs    []hub // USB3 first
	port    int
	offTime time.Duration
	sleep   func(context.Context, time.Duration) error
	closer  io.Closer
}

// NewHubPort finds the hub at location among hubs, and its companion: the hub of the
// other USB version with the same vendor and the same port path (uhubctl's exact match).
func NewHubPort(hubs []HubInfo, location string, port int, offTime time.Duration) (*HubPort, error) {
	var primary *HubInfo
	for i := range hubs {
		if hubs[i].Location == location {
			primary = &hubs[i]
			break
		}
	}
	if primary == nil {
		var locs []string
		for _, h := range hubs {
			locs = append(locs, h.Location)
		}
		return nil, fmt.Errorf("power usb-hub: no hub at %s (hubs: %s)", location, strings.Join(locs, ", "))
	}
	found := []HubInfo{*primary}
	for _, h := range hubs {
		// Root hubs ("1", "2") have no port path to match a companion by: left alone.
		if h.USB3 != primary.USB3 && h.Vendor == primary.Vendor && portPath(location) != "" &&
			portPath(h.Location) == portPath(location) {
			found = append(found, h)
			break
		}
	}
	p := &HubPort{port: port, offTime: orDefault(offTime, DefaultOffTime), sleep: sleep}
	for _, h := range found {
		c, err := checkHub(h, port)
		if err != nil {
			return nil, fmt.Errorf("power usb-hub: %w", err)
		}
		if h.USB3 {
			p.hubs = append([]hub{c}, p.hubs...)
		} else {
			p.hubs = append(p.hubs, c)
		}
	}
	return p, nil
}

// portPath is the location without the bus: "1-1.4" -> "1.4"; a root hub has none.
func portPath(loc string) string {
	if _, path, ok := strings.Cut(loc, "-"); ok {
		return path
	}
	return ""
}

// Off switches the port off on the USB3 hub first, then the USB2 companion, then waits as
// uhubctl does for a USB3 hub's port to really drop.
func (p *HubPort) Off(ctx context.Context) error {
	usb3 := false
	for _, h := range p.hubs {
		if err := p.switchPort(h, false); err != nil {
			return err
		}
		usb3 = usb3 || h.USB3
	}
	if usb3 {
		return p.sleep(ctx, usb3OffSettle)
	}
	return nil
}

// On switches the port on, USB2 first (the reverse of Off).
func (p *HubPort) On(ctx context.Context) error {
	for i := len(p.hubs) - 1; i >= 0; i-- {
		if err := p.switchPort(p.hubs[i], true); err != nil {
			return err
		}
	}
	return nil
}

// switchPort skips a port already in the wanted state, as uhubctl does.
func (p *HubPort) switchPort(h hub, on bool) error {
	powered, err := h.powered(p.port)
	if err != nil {
		return err
	}
	if powered == on {
		return nil
	}
	return h.set(p.port, on)
}

// Cycle is off, the off time, on.
func (p *HubPort) Cycle(ctx context.Context) error {
	if err := p.Off(ctx); err != nil {
		return err
	}
	if err := p.sleep(ctx, p.offTime); err != nil {
		return fmt.Errorf("power cycle: left off: %w", err)
	}
	return p.On(ctx)
}

// State is On or Off when all companions agree, Unknown when they differ.
func (p *HubPort) State(ctx context.Context) (State, error) {
	on, off := 0, 0
	for _, h := range p.hubs {
		powered, err := h.powered(p.port)
		if err != nil {
			return Unknown, err
		}
		if powered {
			on++
		} else {
			off++
		}
	}
	switch {
	case off == 0:
		return On, nil
	case on == 0:
		return Off, nil
	}
	return Unknown, nil
}

// Close releases the USB handles when the hubs were opened by OpenUSBHub.
func (p *HubPort) Close() error {
	if p.closer == nil {
		return nil
	}
	return p.closer.Close()
}

// OpenUSBHub lists the hubs on the USB buses and opens cfg.Hub port cfg.Port.
func OpenUSBHub(cfg Config) (*HubPort, error) {
	if cfg.Hub == "" || cfg.Port == 0 {
		return nil, errors.New("power usb-hub: hub location and port are required")
	}
	hubs, closer, err := ListHubs()
	if err != nil {
		return nil, err
	}
	p, err := NewHubPort(hubs, cfg.Hub, cfg.Port, cfg.OffTime)
	if err != nil {
		closer.Close()
		return nil, err
	}
	p.closer = closer
	return p, nil
}

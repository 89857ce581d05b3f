package power

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/gousb"

	"hilbench/harness/usb"
)

// ListHubs opens every USB hub it can; close the returned Closer when done.
func ListHubs() ([]HubInfo, io.Closer, error) {
	ctx := gousb.NewContext()
	devs, err := ctx.OpenDevices(func(d *gousb.DeviceDesc) bool { return d.Class == gousb.ClassHub })
	c := &hubCloser{ctx: ctx, devs: devs}
	if err != nil && len(devs) == 0 {
		c.Close()
		return nil, nil, fmt.Errorf("power usb-hub: listing hubs: %w", err)
	}
	var hubs []HubInfo
	for _, d := range devs {
		hubs = append(hubs, HubInfo{Location: location(d.Desc.Bus, d.Desc.Path),
			USB3: d.Desc.Spec >= gousb.Version(3, 0), Vendor: uint16(d.Desc.Vendor), Ctl: usb.Wrap(d)})
	}
	return hubs, c, nil
}

// location is uhubctl's: the bus, then "-" and the port path joined with ".".
func location(bus int, path []int) string {
	s := strconv.Itoa(bus)
	if len(path) == 0 {
		return s
	}
	p := make([]string, len(path))
	for i, n := range path {
		p[i] = strconv.Itoa(n)
	}
	return s + "-" + strings.Join(p, ".")
}

type hubCloser struct {
	ctx  *gousb.Context
	devs []*gousb.Device
}

func (c *hubCloser) Close() error {
	for _, d := range c.devs {
		d.Close()
	}
	return c.ctx.Close()
}

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"hilbench/harness/bench"
	"hilbench/harness/flash"
	"hilbench/harness/report"
	"hilbench/harness/usb"
)

func parseID(s string) uint16 {
	v, _ := strconv.ParseUint(s, 16, 16) // the bench file checked: 4 hex digits
	return uint16(v)
}

func flashDFU(ctx context.Context, t *bench.Target, img *flash.Image, unprotect bool, prog *progress, stdout io.Writer, o *report.Outcome) error {
	d := t.Flash.DFU
	vid, pid := parseID(d.VID), parseID(d.PID)
	if img.DFU != nil {
		if err := img.CheckDFUID(vid, pid); err != nil {
			return err
		}
	}
	target := usb.FlashTarget{DFU: usb.Match{Vendor: vid, Product: pid, Serial: d.Serial}, Alt: uint8(d.Alt), Address: d.Address, MassErase: d.MassErase, Unprotect: unprotect}
	if d.RuntimeVID != "" || d.RuntimePID != "" {
		rv, rp := vid, pid
		if d.RuntimeVID != "" {
			rv = parseID(d.RuntimeVID)
		}
		if d.RuntimePID != "" {
			rp = parseID(d.RuntimePID)
		}
		target.Runtime = &usb.Match{Vendor: rv, Product: rp, Serial: d.Serial}
	}
	prog.step(t.Name, "dfu_download")
	bar := flash.NewBar(stdout, t.Name, int64(len(img.Data)))
	res, err := usb.Flash(ctx, target, img.Data, func(done, total int64) { bar.Update(done) })
	bar.Finish()
	if err != nil {
		return err
	}
	o.Facts["dfu_interface"] = res.Interface.String()
	o.Facts["dfu_bytes_per_s"] = fmt.Sprintf("%.0f", res.Stats.Throughput())
	o.Facts["read_back"] = strconv.FormatBool(res.ReadBack)
	fmt.Fprintf(stdout, "%s: %d bytes in %d blocks, %.1f KiB/s, manifestation: %s, read back: %v\n",
		t.Name, res.Stats.Bytes, res.Stats.Blocks, res.Stats.Throughput()/1024, res.Stats.Manifest, res.ReadBack)
	return nil
}

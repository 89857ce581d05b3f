package fakedfu

import (
	"encoding/binary"
	"time"
)

// getStatus answers GETSTATUS; this is where the device moves on (DFU 1.1 figure A.1).
func (d *Device) getStatus(data []byte) (int, error) {
	now := d.clock.Now()
	if now.Before(d.nextPoll) {
		d.stats.EarlyPolls++
	}
	if d.cfg.RealTime && (d.state == dnBusy || d.state == manifest) && now.Before(d.busyUntil) {
		// A real device does not answer before it is done; on the wall clock, take that long.
		d.mu.Unlock()
		time.Sleep(d.busyUntil.Sub(now))
		d.mu.Lock()
		now = d.clock.Now()
	}
	switch d.state {
	case dnloadSync:
		if d.pages != nil && d.pendingNum == 0 && len(d.pending) == 1 && d.pending[0] == 0x92 {
			// Read unprotect: acknowledged busy, then the device erases its flash and resets.
			d.eraseAll()
			d.stats.Unprotects++
			d.state, d.gone = dnBusy, true
			return d.reply(data, max(d.cfg.ProgramTime, time.Millisecond))
		}
		if d.cfg.ProgramTime <= 0 {
			d.commit()
			return d.replyAfterBlock(data)
		}
		d.state = dnBusy
		d.busyUntil = now.Add(d.cfg.ProgramTime)
		return d.reply(data, min(d.cfg.PollTimeout, d.cfg.ProgramTime))
	case dnBusy:
		if left := d.busyUntil.Sub(now); left > 0 {
			return d.reply(data, min(d.cfg.PollTimeout, left))
		}
		d.commit()
		return d.replyAfterBlock(data)
	case manifestSync:
		switch {
		case d.leaving:
			d.state = manifest
			d.stats.Left = true
			d.gone = true // answers this one, then leaves for the application
			return d.reply(data, 0)
		case d.manifested:
			d.state = dfuIdle
			return d.reply(data, 0)
		}
		d.state = manifest
		d.manifestLeft = d.cfg.ManifestPolls
		d.busyUntil = now.Add(d.cfg.ManifestPoll)
		return d.reply(data, d.cfg.ManifestPoll)
	case manifest:
		if d.manifestLeft > 0 {
			d.manifestLeft--
			d.busyUntil = now.Add(d.cfg.ManifestPoll)
			return d.reply(data, d.cfg.ManifestPoll)
		}
		d.done = append([]byte(nil), d.image...)
		d.stats.Downloads++
		if d.cfg.ManifestationTolerant {
			d.state, d.manifested = manifestSync, true
		} else {
			d.state = manifestWaitReset
		}
		return d.reply(data, 0)
	}
	return d.reply(data, 0)
}

// replyAfterBlock answers the GETSTATUS that completes a block, with the configured faults.
func (d *Device) replyAfterBlock(data []byte) (int, error) {
	n, err := d.reply(data, 0)
	if d.cfg.GoneAfterBlock > 0 && d.block == d.cfg.GoneAfterBlock {
		d.gone = true
	}
	return n, err
}

// commit acts on the pending DNLOAD once the device is no longer busy.
func (d *Device) commit() {
	d.state, d.status = dnloadIdle, statusOK
	d.manifested = false
	if st := d.apply(); st != statusOK {
		d.state, d.status = dfuError, st
		return
	}
	if d.pages == nil || d.pendingNum >= 2 {
		d.block++
		d.nextNum++
		if d.cfg.ErrorOnBlock == d.block && !d.errFired {
			d.errFired = true
			d.state, d.status = dfuError, d.cfg.ErrorStatus
		}
	}
}

func (d *Device) apply() uint8 {
	if d.pages == nil {
		d.image = append(d.image, d.pending...)
		return statusOK
	}
	if d.pendingNum == 0 {
		return d.dfuseCommand(d.pending)
	}
	base := d.pointer + uint32(int(d.pendingNum)-2)*uint32(d.cfg.TransferSize)
	for i, b := range d.pending {
		p, ok := d.pageAt(base + uint32(i))
		switch {
		case !ok:
			return statusErrAddress
		case !p.writable():
			return statusErrWrite
		}
		buf := d.pageBytes(p)
		off := base + uint32(i) - p.start
		if buf[off] != 0xFF {
			return statusErrProg // flash must be erased before it is programmed
		}
		buf[off] = b
	}
	return statusOK
}

func (d *Device) dfuseCommand(c []byte) uint8 {
	switch {
	case len(c) == 1 && c[0] == 0x41:
		d.eraseAll()
		d.stats.MassErases++
		return statusOK
	case len(c) == 5 && c[0] == 0x21:
		d.pointer = binary.LittleEndian.Uint32(c[1:])
		return statusOK
	case len(c) == 5 && c[0] == 0x41:
		addr := binary.LittleEndian.Uint32(c[1:])
		p, ok := d.pageAt(addr)
		if !ok || p.start != addr || !p.erasable() {
			return statusErrTarget
		}
		buf := d.pageBytes(p)
		for i := range buf {
			buf[i] = 0xFF
		}
		d.stats.Erases = append(d.stats.Erases, addr)
		return statusOK
	}
	return statusErrUnknown
}

// eraseAll erases every erasable page (mass erase, read unprotect).
func (d *Device) eraseAll() {
	for _, p := range d.pages {
		if !p.erasable() {
			continue
		}
		buf := d.pageBytes(p)
		for i := range buf {
			buf[i] = 0xFF
		}
	}
}

func (d *Device) pageAt(a uint32) (page, bool) {
	for _, p := range d.pages {
		if a >= p.start && a-p.start < p.size {
			return p, true
		}
	}
	return page{}, false
}

func (d *Device) pageBytes(p page) []byte {
	b, ok := d.mem[p.start]
	if !ok {
		b = make([]byte, p.size) // never erased: zeros
		d.mem[p.start] = b
	}
	return b
}

func (d *Device) readFlash(a uint32) (byte, bool) {
	p, ok := d.pageAt(a)
	if !ok {
		return 0, false
	}
	if b, ok := d.mem[p.start]; ok {
		return b[a-p.start], true
	}
	return 0, true
}

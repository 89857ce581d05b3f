package sim

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The boot ROM's command line: a small U-Boot-like console implemented in Go.
// It reads what pumpIn delivers and writes with d.send, so line rate, noise,
// silence and power cuts apply to it as to the shell.

const (
	bootROMVersion = "HILSIM boot ROM 1.0"
	bootROMPrompt  = "=> "
	maxLine        = 256
	// settle: after a transfer the boot ROM waits for this much silence
	// on the line before it prints the report.
	settle = 500 * time.Millisecond
)

// errPowerCut: the boot ROM was stopped (power cut, reset, Close).
var errPowerCut = errors.New("boot ROM stopped")

// errIdle: nothing arrived within the timeout.
var errIdle = errors.New("idle")

// bootloader is one run of the boot ROM's command line.
type bootloader struct {
	d    *Device
	g    uint64        // power generation it belongs to
	in   chan []byte   // from pumpIn
	quit chan struct{} // closed by stop
	done chan struct{} // closed when run has returned
	once sync.Once

	pending []byte    // received, not yet consumed
	lastRx  time.Time // when the last byte was consumed
	afterCR bool      // the previous byte ended a line with CR
}

// blMsg is a request of the boot ROM to the supervisor: "boot" or "reset".
type blMsg struct {
	bl     *bootloader
	action string
}

func (b *bootloader) stop() {
	b.once.Do(func() { close(b.quit) })
	<-b.done
}

// enterBootloader starts the boot ROM's command line (caller: supervisor).
func (d *Device) enterBootloader(g uint64) {
	b := &bootloader{
		d: d, g: g,
		in:   make(chan []byte, 256),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	d.mu.Lock()
	if !d.powered || d.gen != g {
		d.mu.Unlock()
		return
	}
	d.bl = b
	d.running = ""
	d.mu.Unlock()
	d.logf("%s: boot ROM", d.cfg.Name)
	d.wg.Add(1)
	go b.run()
}

// endBootloader stops the boot ROM's command line (caller: supervisor).
func (d *Device) endBootloader(b *bootloader) {
	d.mu.Lock()
	if d.bl == b {
		d.bl = nil
	}
	d.mu.Unlock()
	b.stop()
}

func (b *bootloader) out(s string)   { b.d.send([]byte(s), b.g) }
func (b *bootloader) outb(p ...byte) { b.d.send(p, b.g) }
func (b *bootloader) printf(f string, a ...any) {
	b.out(fmt.Sprintf(f, a...))
}

// readByte returns the next received byte, waiting up to timeout.
func (b *bootloader) readByte(timeout time.Duration) (byte, error) {
	if len(b.pending) == 0 {
		if err := b.wait(timeout); err != nil {
			return 0, err
		}
	}
	c := b.pending[0]
	b.pending = b.pending[1:]
	b.lastRx = time.Now()
	return c, nil
}

// readFull fills p, waiting up to timeout for each piece.
func (b *bootloader) readFull(p []byte, timeout time.Duration) error {
	for len(p) > 0 {
		if len(b.pending) == 0 {
			if err := b.wait(timeout); err != nil {
				return err
			}
		}
		n := copy(p, b.pending)
		b.pending = b.pending[n:]
		p = p[n:]
		b.lastRx = time.Now()
	}
	return nil
}

// wait waits for input into pending.
func (b *bootloader) wait(timeout time.Duration) error {
	select {
	case p := <-b.in:
		b.pending = p
		return nil
	case <-b.quit:
		return errPowerCut
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case p := <-b.in:
		b.pending = p
		return nil
	case <-b.quit:
		return errPowerCut
	case <-t.C:
		return errIdle
	}
}

// purge drops input until the line has been quiet for quiet (at most max).
func (b *bootloader) purge(quiet, max time.Duration) error {
	b.pending = nil
	end := time.Now().Add(max)
	for time.Now().Before(end) {
		err := b.wait(quiet)
		b.pending = nil
		if err != nil {
			if errors.Is(err, errIdle) {
				return nil
			}
			return err
		}
	}
	return nil
}

// readLine reads a command line with echo and simple editing. CR, LF or
// CR LF ends a line; BS/DEL erase; ^C drops the line.
func (b *bootloader) readLine() (string, error) {
	var line []byte
	for {
		c, err := b.readByte(time.Hour)
		if errors.Is(err, errIdle) {
			continue
		}
		if err != nil {
			return "", err
		}
		afterCR := b.afterCR
		b.afterCR = false
		switch {
		case c == '\r':
			b.afterCR = true
			b.out("\r\n")
			return string(line), nil
		case c == '\n':
			if afterCR {
				continue // the LF of a CR LF
			}
			b.out("\r\n")
			return string(line), nil
		case c == 0x03:
			b.out("<INTERRUPT>\r\n")
			return "", nil
		case c == 0x08 || c == 0x7f:
			if len(line) > 0 {
				line = line[:len(line)-1]
				b.out("\b \b")
			}
		case c >= ' ' && c <= '~':
			if len(line) < maxLine {
				line = append(line, c)
				b.outb(c)
			}
		}
	}
}

// run is the boot ROM's command loop.
func (b *bootloader) run() {
	defer b.d.wg.Done()
	defer close(b.done)
	b.out("\r\n" + bootROMVersion + "\r\n")
	for {
		b.out(bootROMPrompt)
		line, err := b.readLine()
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "help", "?":
			b.out("boot    - boot the active firmware slot\r\n" +
				"help    - print this list\r\n" +
				"loady   - receive a firmware image (ymodem) into the inactive slot\r\n" +
				"reset   - reset the board\r\n" +
				"slots   - show the firmware slots\r\n" +
				"version - print the boot ROM version\r\n")
		case "version":
			b.out(bootROMVersion + "\r\n")
		case "slots":
			b.slots()
		case "loady":
			if err := b.loady(); err != nil {
				return
			}
		case "boot":
			if _, _, ok := b.d.l.pickSlot(); !ok {
				b.out("## No valid firmware in slot A or B\r\n")
				continue
			}
			b.request("boot")
			return
		case "reset":
			b.out("resetting ...\r\n")
			b.request("reset")
			return
		default:
			b.printf("Unknown command '%s' - try 'help'\r\n", f[0])
		}
	}
}

// request hands the board over to the supervisor.
func (b *bootloader) request(action string) {
	select {
	case b.d.blReq <- blMsg{bl: b, action: action}:
	case <-b.quit:
	}
}

func (b *bootloader) slots() {
	active := b.d.l.activeSlot()
	for _, s := range []string{SlotA, SlotB} {
		si := b.d.l.readSlot(s)
		v, valid, act := si.version, "no", ""
		if v == "" {
			v = "-"
		}
		if si.valid {
			valid = "yes"
		}
		if s == active {
			act = " active"
		}
		b.printf("%s: version=%s size=%d sha256=%s valid=%s%s\r\n", s, v, si.size, si.sha256, valid, act)
	}
}

// loady receives an image into the inactive slot and activates it if valid.
// It returns an error only when the boot ROM must stop (power cut).
func (b *bootloader) loady() error {
	l := b.d.l
	slot := otherSlot(l.activeSlot())
	b.printf("## Ready for binary (ymodem) download to slot %s at %d bps...\r\n", slot, b.d.cfg.Baud)
	res, err := b.receive(l.slotPath(slot))
	if errors.Is(err, errPowerCut) {
		return err
	}
	if err != nil {
		// Let the rest of an interrupted block pass, so that it is not taken
		// for typed commands.
		if perr := b.purge(settle, 5*time.Second); perr != nil {
			return perr
		}
		b.printf("## %v\r\n", err)
		b.d.logf("%s: loady into slot %s: %v", b.d.cfg.Name, slot, err)
		return nil
	}
	// Let the line settle before reporting, as U-Boot's loady does: a
	// sender reads (and lrzsz's sb then flushes) whatever arrives right
	// after its last ACK.
	if err := b.purge(settle, 5*time.Second); err != nil {
		return err
	}
	b.printf("## Total Size      = 0x%08x = %d Bytes\r\n", res.size, res.size)
	b.printf("## SHA-256        = %x\r\n", res.sum)
	si := l.readSlot(slot)
	if !si.valid {
		b.printf("## Image invalid: %v\r\n", si.why)
		b.d.logf("%s: loady into slot %s: image invalid: %v", b.d.cfg.Name, slot, si.why)
		return nil
	}
	if err := l.setActive(slot); err != nil {
		b.printf("## Cannot activate slot %s: %v\r\n", slot, err)
		b.d.fail(err)
		return nil
	}
	b.printf("## Slot %s: version %s installed, active\r\n", slot, si.version)
	b.d.logf("%s: slot %s: version %s installed, active", b.d.cfg.Name, slot, si.version)
	return nil
}

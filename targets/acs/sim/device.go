package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/creack/pty"

	"hilbench/targets/simline"
)

// Errors callers branch on.
var (
	// ErrClosed: the Device has been closed.
	ErrClosed = errors.New("sim: device closed")
	// ErrPoweredOff: the operation needs a powered device.
	ErrPoweredOff = errors.New("sim: device is powered off")
)

// respawnDelay is how long "init" waits before restarting a console shell
// that exited by itself (exit, ^D), so a shell that cannot start does not spin.
const respawnDelay = 200 * time.Millisecond

// writeGrace bounds a write into a full receive buffer. After it the bytes
// are lost, as a UART without flow control loses them.
const writeGrace = 100 * time.Millisecond

// Device is one simulated ACS device behind a pseudo-terminal.
type Device struct {
	cfg      Config
	l        layout
	lockFile *os.File
	am       *os.File // master of pty A: the device's side of the USB-UART adapter
	as       *os.File // our fd on A's slave: keeps the line up while the harness reopens
	portName string   // /dev/pts/N of A's slave
	// Bytes moved at once: about 10 ms of line time, and 1 ms into the shell, which echoes what
	// it receives when it has it: a coarser grain would hold the echo back from the sending.
	chunk, inChunk int

	reqs  chan request
	ctl   chan ctlMsg
	blReq chan blMsg
	done  chan struct{} // closed when the supervisor has stopped
	wg    sync.WaitGroup

	txMu sync.Mutex    // serialises writers of the device->harness line
	tx   simline.Pacer // guarded by txMu
	rx   simline.Pacer // used by pumpIn only
	busy busyClock     // the shell's processing time

	mu       sync.Mutex
	powered  bool
	gen      uint64 // bumped at every power cut: output of older sessions is dropped
	sess     *session
	bl       *bootloader // the boot ROM's command line while it runs
	strap    bool        // boot strap: enter the boot ROM at power-on and reset
	blNext   bool        // reboot_bootloader: enter the boot ROM at the next boot
	running  string      // version of the firmware running now, "" if none
	runSlot  string      // slot it was booted from
	boots    int
	bootedAt time.Time
	silent   bool
	noise    float64
	rng      *rand.Rand
	lastErr  error
	armed    *armedCut // a one-shot power cut (cut.go)

	closeOnce sync.Once
}

type reqKind int

const (
	reqReboot reqKind = iota
	reqFactoryReset
	reqPowerOff
	reqPowerOn
	reqClose
)

type request struct {
	kind  reqKind
	reply chan error
}

// Start creates (or reopens) the device in cfg.Dir and powers it on: after
// cfg.BootDelay the boot banner and then the shell's prompt appear on the
// port. Start returns without waiting for the boot.
func Start(cfg Config) (*Device, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Device{
		cfg:     cfg,
		l:       newLayout(cfg.Dir),
		chunk:   simline.ChunkSize(cfg.Baud, 10*time.Millisecond),
		inChunk: simline.ChunkSize(cfg.Baud, time.Millisecond),
		tx:      simline.NewPacer(cfg.Baud),
		rx:      simline.NewPacer(cfg.Baud),
		reqs:    make(chan request),
		ctl:     make(chan ctlMsg),
		blReq:   make(chan blMsg),
		done:    make(chan struct{}),
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	d.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	d.strap = cfg.BootloaderStrap

	if d.lockFile, err = d.l.lockDir(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Name, err)
	}
	fail := func(err error) (*Device, error) {
		if d.am != nil {
			d.am.Close()
		}
		if d.as != nil {
			d.as.Close()
		}
		d.lockFile.Close()
		return nil, fmt.Errorf("starting %s: %w", cfg.Name, err)
	}
	if err := d.l.install(cfg); err != nil {
		return fail(err)
	}
	if d.am, d.as, err = pty.Open(); err != nil {
		return fail(fmt.Errorf("opening pty: %w", err))
	}
	d.portName = d.as.Name()
	if d.am, err = simline.Pollable(d.am); err != nil {
		return fail(err)
	}
	if d.as, err = simline.Pollable(d.as); err != nil {
		return fail(err)
	}
	if err := simline.MakeRaw(d.as, cfg.Baud); err != nil {
		return fail(err)
	}
	if err := linkAtomic(d.portName, d.l.tty); err != nil {
		return fail(err)
	}

	d.powered = true
	d.wg.Add(1)
	go d.pumpIn()
	go d.supervise()
	d.logf("%s: started on %s (port %s)", cfg.Name, cfg.Dir, d.portName)
	return d, nil
}

// StartMany starts n devices dut1..dutN in root/dutN, each with base's
// settings. On error the ones already started are closed.
func StartMany(root string, n int, base Config) ([]*Device, error) {
	devs := make([]*Device, 0, n)
	for i := 1; i <= n; i++ {
		cfg := base
		cfg.Name = "dut" + strconv.Itoa(i)
		cfg.Dir = filepath.Join(root, cfg.Name)
		d, err := Start(cfg)
		if err != nil {
			for _, d := range devs {
				d.Close()
			}
			return nil, err
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// Name is the device's name.
func (d *Device) Name() string { return d.cfg.Name }

// Config returns the configuration in effect (defaults filled in).
func (d *Device) Config() Config { return d.cfg }

// PortPath is the stable path the harness opens, <Dir>/tty, a symlink to the
// pseudo-terminal standing in for /dev/ttyUSB0.
func (d *Device) PortPath() string { return d.l.tty }

// PortName is the pseudo-terminal itself (/dev/pts/N).
func (d *Device) PortName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.portName
}

// Dir is the device's directory.
func (d *Device) Dir() string { return d.l.dir }

// DataDir is the host path of the device's /data. Point the driver's
// data_dir at it: the simulated shell runs on the host, so it has no /data.
func (d *Device) DataDir() string { return d.l.data }

// DHADir is the host path of the device's protected DHA storage (key and
// chain), for tests that inspect or damage it.
func (d *Device) DHADir() string { return d.l.dha }

// Powered reports whether the device has power.
func (d *Device) Powered() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.powered
}

// Boots counts the firmware boots since Start (the first one included);
// entering the boot ROM's command line is not counted.
func (d *Device) Boots() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.boots
}

// ShellPID is the pid of the running console shell, 0 while none runs.
func (d *Device) ShellPID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return 0
	}
	return d.sess.pid
}

// Err is the last internal error (a shell that failed to start, storage that
// could not be wiped), or nil. Such errors also go to Config.Logf.
func (d *Device) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// Reboot resets the device as the `reboot` command does: the shell and its
// children are killed, "Restarting system." goes out, and after BootDelay the
// device boots again. It returns once the old shell is gone.
func (d *Device) Reboot() error { return d.do(reqReboot) }

// FactoryReset wipes data/ (dha/ stays) and reboots, as the `factory_reset`
// command does.
func (d *Device) FactoryReset() error { return d.do(reqFactoryReset) }

// PowerOff cuts the power at once: every process of the device is killed mid
// whatever it does, nothing more is sent, input is dropped. The port stays
// open, as a USB-UART adapter's does. No-op when already off.
func (d *Device) PowerOff() error {
	d.cut()
	return d.do(reqPowerOff)
}

// PowerOn boots a device that is off (after BootDelay); no-op when on.
func (d *Device) PowerOn() error { return d.do(reqPowerOn) }

// Close powers the device off and stops the simulator: no process or
// goroutine of it is left. Nothing in Dir is removed; the port vanishes.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.cut()
		_ = d.do(reqClose)
		<-d.done
		d.txMu.Lock() // a re-enumeration (reenum.go) swaps them under txMu
		am, as := d.am, d.as
		d.txMu.Unlock()
		// The board leaves the bus: its stable name goes first (as /dev/serial/by-id/... does), so
		// a harness still waiting for it finds nothing rather than the next pseudo-terminal to
		// take this one's number.
		_ = os.Remove(d.l.tty)
		am.Close() // ends pumpIn
		d.wg.Wait()
		as.Close()
		d.lockFile.Close()
		d.logf("%s: closed", d.cfg.Name)
	})
	return nil
}

// SetSilent makes the device send nothing at all while on (it still runs and
// reads input), like a console whose TX wire came loose.
func (d *Device) SetSilent(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.silent = on
}

// SetNoiseRate makes each byte the device sends be replaced by a different,
// random byte with probability p (0 turns it off).
func (d *Device) SetNoiseRate(p float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.noise = min(max(p, 0), 1)
}

// InjectNoise puts n random bytes on the device->harness line now (after
// whatever is being sent), unless the device is off or silent. It returns
// once they are on the line (n bytes of line time with Baud > 0).
func (d *Device) InjectNoise(n int) {
	d.mu.Lock()
	g := d.gen
	garbage := make([]byte, n)
	for i := range garbage {
		garbage[i] = byte(d.rng.UintN(256))
	}
	d.mu.Unlock()
	d.send(garbage, g)
}

// SetFault switches a device-side fault (the Fault* constants) on or off.
// It applies from the next command (no_prompt: from the next boot).
func (d *Device) SetFault(name string, on bool) error {
	known := false
	for _, f := range AllFaults() {
		known = known || f == name
	}
	if !known {
		return fmt.Errorf("sim: unknown fault %q (known: %v)", name, AllFaults())
	}
	path := filepath.Join(d.l.faults, name)
	if on {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			return fmt.Errorf("setting fault %s: %w", name, err)
		}
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clearing fault %s: %w", name, err)
	}
	return nil
}

// FaultOn reports whether a device-side fault is set.
func (d *Device) FaultOn(name string) bool { return d.faultOn(name) }

// takeFault reports whether a one-shot fault is set, and clears it.
func (d *Device) takeFault(name string) bool {
	return os.Remove(filepath.Join(d.l.faults, name)) == nil
}

func (d *Device) faultOn(name string) bool {
	_, err := os.Stat(filepath.Join(d.l.faults, name))
	return err == nil
}

// cut removes power: from now on nothing of the current session is sent.
func (d *Device) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.powered = false
	d.gen++
}

func (d *Device) do(k reqKind) error {
	r := request{kind: k, reply: make(chan error, 1)}
	select {
	case d.reqs <- r:
	case <-d.done:
		return ErrClosed
	}
	// The supervisor always replies, also to reqClose before it stops.
	return <-r.reply
}

func (d *Device) logf(format string, args ...any) {
	if d.cfg.Logf != nil {
		d.cfg.Logf(format, args...)
	}
}

func (d *Device) fail(err error) {
	d.mu.Lock()
	d.lastErr = err
	d.mu.Unlock()
	d.logf("%s: %v", d.cfg.Name, err)
}

// supervise is the board: it owns the shell's life (boot, respawn, reset,
// power) so that these never race each other.
func (d *Device) supervise() {
	defer close(d.done)
	var (
		timer   *time.Timer
		timerC  <-chan time.Time
		respawn bool // the pending timer restarts the shell, not the board
	)
	schedule := func(delay time.Duration, isRespawn bool) {
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(delay)
		timerC, respawn = timer.C, isRespawn
	}
	cancel := func() {
		if timer != nil {
			timer.Stop()
		}
		timerC = nil
	}
	defer cancel()
	schedule(d.cfg.BootDelay, false)

	for {
		d.mu.Lock()
		s, bl := d.sess, d.bl
		d.mu.Unlock()
		var exited <-chan struct{}
		if s != nil {
			exited = s.exited
		}

		select {
		case r := <-d.reqs:
			switch r.kind {
			case reqReboot, reqFactoryReset:
				err := d.restart(r.kind == reqFactoryReset)
				if err == nil {
					schedule(d.cfg.BootDelay, false)
				}
				r.reply <- err
			case reqPowerOff:
				cancel()
				if s != nil {
					d.endSession(s, false)
				}
				if bl != nil {
					d.endBootloader(bl)
				}
				d.mu.Lock()
				// Off here too, not only in cut: a PowerOn that came between an armed cut
				// (cut.go) and this request must not leave a board that is on but never boots.
				d.powered = false
				d.running, d.runSlot, d.blNext = "", "", false
				d.mu.Unlock()
				d.logf("%s: power off", d.cfg.Name)
				r.reply <- nil
			case reqPowerOn:
				d.mu.Lock()
				wasOn := d.powered
				d.powered = true
				d.mu.Unlock()
				if !wasOn {
					d.logf("%s: power on", d.cfg.Name)
					schedule(d.cfg.BootDelay, false)
				}
				r.reply <- nil
			case reqClose:
				cancel()
				if s != nil {
					d.endSession(s, false)
				}
				if bl != nil {
					d.endBootloader(bl)
				}
				r.reply <- nil
				return
			}

		case m := <-d.ctl:
			if m.s != s {
				continue // from a session that is already gone
			}
			switch m.action {
			case "reboot", "factory_reset", "reboot_bootloader":
				if m.action == "reboot_bootloader" && !d.faultOn(FaultNoBootloader) {
					d.mu.Lock()
					d.blNext = true
					d.mu.Unlock()
				}
				if err := d.restart(m.action == "factory_reset"); err == nil {
					schedule(d.cfg.BootDelay, false)
				}
			default:
				d.logf("%s: unknown control request %q", d.cfg.Name, m.action)
			}

		case m := <-d.blReq:
			if m.bl != bl {
				continue
			}
			d.endBootloader(bl)
			switch m.action {
			case "boot":
				d.mu.Lock()
				g := d.gen
				d.mu.Unlock()
				d.bootFirmware(g)
			case "reset":
				schedule(d.cfg.BootDelay, false)
			}

		case <-exited:
			// The shell ended by itself (exit, ^D): init respawns it.
			d.endSession(s, true)
			schedule(respawnDelay, true)

		case <-timerC:
			timerC = nil
			if respawn {
				d.startShell()
			} else {
				d.boot()
			}
		}
	}
}

// restart ends the session and prints the reset messages; the caller
// schedules the boot.
func (d *Device) restart(wipe bool) error {
	d.mu.Lock()
	on, s, bl := d.powered, d.sess, d.bl
	d.mu.Unlock()
	if !on {
		return ErrPoweredOff
	}
	if s != nil {
		d.endSession(s, true)
	}
	var msg []byte
	if bl != nil {
		d.endBootloader(bl)
		msg = append(msg, "resetting ...\r\n"...)
	} else {
		msg = append(msg, "\r\nThe system is going down NOW!\r\nSent SIGTERM to all processes\r\nSent SIGKILL to all processes\r\n"...)
	}
	d.mu.Lock()
	d.running, d.runSlot = "", ""
	d.mu.Unlock()
	if wipe {
		if err := emptyDir(d.l.data); err != nil {
			d.fail(fmt.Errorf("factory reset: %w", err))
		}
		msg = append(msg, d.klog("factory_reset: /data erased")...)
	}
	msg = append(msg, "Requesting system reboot\r\n"...)
	msg = append(msg, d.klog("reboot: Restarting system.")...)
	d.mu.Lock()
	g := d.gen
	d.mu.Unlock()
	d.send(msg, g)
	if wipe {
		d.logf("%s: factory reset", d.cfg.Name)
	} else {
		d.logf("%s: reboot", d.cfg.Name)
	}
	return nil
}

// boot runs the board from reset: into the boot ROM's command line when the
// strap is set or reboot_bootloader asked for it, else to the console shell.
func (d *Device) boot() {
	d.mu.Lock()
	if !d.powered {
		d.mu.Unlock()
		return
	}
	g := d.gen
	toROM := d.strap || d.blNext
	d.blNext = false
	d.mu.Unlock()

	if err := d.l.prepareBoot(); err != nil {
		d.fail(fmt.Errorf("boot: %w", err))
	}
	if toROM {
		d.enterBootloader(g)
		return
	}
	d.bootFirmware(g)
}

// bootFirmware boots the active slot (or the other one if the active one is
// invalid) up to the console shell. With no valid slot the board stays in
// the boot ROM.
func (d *Device) bootFirmware(g uint64) {
	si, fallback, ok := d.l.pickSlot()
	if !ok {
		d.send([]byte("\r\nboot: no valid firmware in slot A or B, staying in the boot ROM\r\n"), g)
		d.logf("%s: no valid firmware slot", d.cfg.Name)
		d.enterBootloader(g)
		return
	}
	var pre []byte
	if fallback {
		bad := otherSlot(si.name)
		pre = fmt.Appendf(nil, "\r\nboot: slot %s invalid, booting slot %s", bad, si.name)
		d.logf("%s: slot %s invalid (%v), booting slot %s", d.cfg.Name, bad, d.l.readSlot(bad).why, si.name)
		// The good slot becomes the active one, so that the next loady
		// writes over the broken slot, never over the one that runs.
		if err := d.l.setActive(si.name); err != nil {
			d.fail(fmt.Errorf("boot: %w", err))
		}
	}
	if err := writeFileAtomic(d.l.running, []byte(si.version+"\n"), 0o644); err != nil {
		d.fail(fmt.Errorf("boot: %w", err))
	}
	d.mu.Lock()
	if !d.powered || d.gen != g {
		d.mu.Unlock()
		return
	}
	d.boots++
	n := d.boots
	d.bootedAt = time.Now()
	d.running, d.runSlot = si.version, si.name
	d.mu.Unlock()

	d.send(append(pre, d.banner(n, si.version, si.name)...), g)
	d.logf("%s: boot %d (slot %s, firmware %s)", d.cfg.Name, n, si.name, si.version)
	d.startShell()
}

// startShell starts the console shell unless power went away meanwhile.
func (d *Device) startShell() {
	d.mu.Lock()
	on, g := d.powered, d.gen
	d.mu.Unlock()
	if !on {
		return
	}
	s, err := d.startSession(g)
	if err != nil {
		d.fail(err) // the board hangs without a console, as a bricked one would
		return
	}
	d.mu.Lock()
	stale := d.gen != g
	if !stale {
		d.sess = s
	}
	d.mu.Unlock()
	if stale { // power was cut while the shell started
		d.endSession(s, false)
	}
}

// klog formats a kernel log line with the time since boot.
func (d *Device) klog(msg string) string {
	d.mu.Lock()
	// The banner's kernel was 1.2 s up when it started init.
	up := time.Since(d.bootedAt) + 1300*time.Millisecond
	d.mu.Unlock()
	if up > 99999*time.Second {
		up = 0
	}
	return fmt.Sprintf("[%5d.%06d] %s\r\n", int(up/time.Second), int(up%time.Second/time.Microsecond), msg)
}

// banner is what boot loader and kernel print before the console shell.
func (d *Device) banner(boot int, version, slot string) []byte {
	return fmt.Appendf(nil, "\r\n"+
		"U-Boot 2021.04-acs (hilbench ACS simulator)\r\n"+
		"\r\n"+
		"DRAM:  512 MiB\r\n"+
		"Boot:  slot %s\r\n"+
		"Hit any key to stop autoboot:  0 \r\n"+
		"Starting kernel ...\r\n"+
		"\r\n"+
		"[    0.000000] Booting Linux on physical CPU 0x0\r\n"+
		"[    0.000000] Linux version 5.15.0-acs #1 SMP PREEMPT\r\n"+
		"[    0.731104] acs: device %s, firmware %s, boot %d\r\n"+
		"[    1.204410] Run /sbin/init as init process\r\n"+
		"\r\n"+
		"ACS firmware %s (%s)\r\n",
		slot, d.cfg.Name, version, boot, version, d.cfg.Name)
}

// send puts p on the device->harness line at the line rate, with the line's
// faults applied. Bytes of generation g are dropped once the power was cut.
func (d *Device) send(p []byte, g uint64) {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	for first := true; len(p) > 0; first = false {
		n := min(len(p), d.chunk)
		chunk := p[:n]
		p = p[n:]
		if !d.live(g) {
			return
		}
		if first {
			d.tx.Transmit(n)
		} else {
			d.tx.Continue(n)
		}
		out, ok := d.shape(chunk, g)
		if !ok {
			return
		}
		// A full receive buffer (nobody reading the port) loses bytes
		// instead of stalling the device.
		_ = d.am.SetWriteDeadline(time.Now().Add(writeGrace))
		_, _ = d.am.Write(out)
	}
}

func (d *Device) live(g uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.powered && d.gen == g && !d.silent
}

// shape applies the line's faults to a chunk about to be received by the
// harness: noise, and garbage when the port is set to another line rate.
func (d *Device) shape(chunk []byte, g uint64) ([]byte, bool) {
	mismatch := d.speedMismatch()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.powered || d.gen != g || d.silent {
		return nil, false
	}
	if d.noise == 0 && !mismatch {
		return chunk, true
	}
	out := make([]byte, len(chunk))
	for i, b := range chunk {
		switch {
		case mismatch:
			out[i] = d.garbage()
		case d.noise > 0 && d.rng.Float64() < d.noise:
			out[i] = b ^ byte(1+d.rng.UintN(255)) // always a different byte
		default:
			out[i] = b
		}
	}
	return out, true
}

// garbage is what a UART receiver makes of a frame sent at another rate:
// mostly framing errors with the high bits set. Caller holds mu.
func (d *Device) garbage() byte { return byte(0x80 | d.rng.UintN(128)) }

// speedMismatch reports whether the harness set the port to a line rate other
// than the device's. Only with a modelled line rate (Baud > 0).
func (d *Device) speedMismatch() bool {
	if d.cfg.Baud == 0 {
		return false
	}
	d.mu.Lock()
	as := d.as // swapped by a re-enumeration
	d.mu.Unlock()
	rate, ok := simline.PortSpeed(as)
	return ok && rate != d.cfg.Baud
}

// inputGrain is how many received bytes pumpIn moves at once: the boot ROM's YMODEM receiver
// acts on whole blocks, the shell on every byte.
func (d *Device) inputGrain() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bl != nil {
		return d.chunk
	}
	return d.inChunk
}

// pumpIn carries what the harness types to the console shell, at the line
// rate. Input while off, booting or between shells is lost.
func (d *Device) pumpIn() {
	defer d.wg.Done()
	buf := make([]byte, 4096)
	for {
		am := d.master()
		n, err := am.Read(buf)
		var fire *armedCut // an armed power cut reached in this read (cut.go)
		for p, first := buf[:n], true; len(p) > 0; first = false {
			k := min(len(p), d.inputGrain())
			chunk := p[:k]
			p = p[k:]
			if first {
				d.rx.Transmit(k)
			} else {
				d.rx.Continue(k) // one write's bytes cross the line back to back
			}
			mismatch := d.speedMismatch()
			d.mu.Lock()
			s, bl := d.sess, d.bl
			if !d.powered {
				s, bl = nil, nil
			}
			if (s != nil || bl != nil) && mismatch {
				garbled := make([]byte, len(chunk))
				for i := range garbled {
					garbled[i] = d.garbage()
				}
				chunk = garbled
			}
			keep, cut := d.cutPoint(len(chunk), s != nil, bl != nil)
			d.mu.Unlock()
			if cut != nil {
				// The bytes before the cut point arrive; the rest is lost with the power.
				chunk, p, fire = chunk[:keep], nil, cut
				if len(chunk) == 0 {
					continue // the receivers take no empty reads
				}
			}
			if bl != nil {
				select {
				case bl.in <- bytes.Clone(chunk):
				case <-bl.quit:
				}
				continue
			}
			if s == nil {
				continue
			}
			_ = s.bm.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if n, _ := s.bm.Write(chunk); n > 0 {
				d.busy.lineIn(chunk[:n])
			}
		}
		if fire != nil {
			d.powerCutNow(fire.RestoreAfter)
		}
		if err != nil && d.master() != am {
			continue // re-enumerated (reenum.go): read the new master
		}
		if err != nil {
			return // am closed by Close
		}
	}
}

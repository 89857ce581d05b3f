// Package sim simulates an ACK module behind a pseudo-terminal, speaking the HA1 dialect of
// targets/ack/PROTOCOL.md. It shares no code with the driver in targets/ack: frames are built and
// parsed here on their own, so a driver bug cannot hide behind a shared code path.
//
// Storage (under Config.Dir): key.pem (the module's P-256 key: survives reboot, power loss and
// factory reset), cert.pem (the certificate area, written atomically: a torn write leaves
// cert.pem.tmp, which boot discards), userdata/ (cleared by FACTORY_RESET), tty (symlink to the
// pty the harness opens as the module's UART), power.sock (ServePower).
//
// The line between harness and module can drop, corrupt and insert bytes (SetLineFaults), and
// the power can be cut at a chosen byte of the certificate upload or of the certificate write
// (ArmPowerCut).
package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"hilbench/targets/simline"
	"hilbench/targets/simpower"
)

// Defaults for zero Config fields.
const (
	DefaultModule         = "ACK-SIM-MW1"
	DefaultFirmware       = "ack-sim-1.0.0"
	DefaultDialect        = "HA1"
	DefaultBootDelay      = 200 * time.Millisecond
	DefaultFlashWriteRate = 50_000
	maxChunk              = 256
)

// Faults for SetFault.
const (
	FaultBadCSRCurve = "bad_csr_curve" // CSR signed by a fresh P-384 key instead of the module's key
	FaultTextOnly    = "text_only"     // every line is answered "ERROR: unknown command" in plain text
	FaultSilent      = "silent"        // the module sends nothing
)

// Config describes one simulated module.
type Config struct {
	Name, Dir      string
	DSN            string // default: "G0A1" + 12 hex digits derived from Name
	Module         string
	Firmware       string
	Dialect        string // "HA1"; another value simulates a module speaking another version
	Baud           int    // > 0: each direction carries at most Baud/10 bytes per second
	BootDelay      time.Duration
	FlashWriteRate int // bytes per second the certificate area is written at
	Seed           uint64
	Logf           func(format string, args ...any)
}

// LineFaults are per-byte probabilities, applied to both directions.
type LineFaults struct {
	Noise   float64 // an extra random byte after this one
	Drop    float64 // the byte is lost
	Corrupt float64 // the byte arrives as another byte
}

// PowerCut cuts the power once, when Phase reaches AtByte: "upload" counts DATA payload bytes
// received since boot, "commit" counts bytes of the certificate area written.
type PowerCut struct {
	Phase        string
	AtByte       int
	RestoreAfter time.Duration // 0: stays off until PowerOn
}

// Stats count what the module saw and did since Start.
type Stats struct {
	FramesReceived, Damaged, NAKsSent, Duplicates, Commits, Boots, PowerCuts, Busy int
	BytesIn, BytesOut                                                              int64
	// Processing is the module's own time: from a request line's end to its answer ready to go
	// (the answer's line time not included). No host can take it away.
	Processing time.Duration
}

// Module is one simulated ACK module.
type Module struct {
	cfg      Config
	lock     *os.File
	am, as   *os.File // pty master (the module's side) and our fd on the slave
	portName string

	txMu   sync.Mutex
	tx, rx simline.Pacer

	mu      sync.Mutex
	powered bool
	gen     uint64
	run     *runState // the firmware's RAM while powered and booted
	faults  LineFaults
	cut     *PowerCut
	rng     *rand.Rand
	stats   Stats
	fault   map[string]bool
	busy    map[string]int // verb -> requests still to answer code=busy (SetBusy)
	timer   *time.Timer
	closed  bool
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Start creates (or reopens) the module in cfg.Dir and powers it on.
func Start(cfg Config) (*Module, error) {
	if cfg.Name == "" || cfg.Dir == "" {
		return nil, errors.New("ack sim: Name and Dir are required")
	}
	if cfg.DSN == "" {
		cfg.DSN = fmt.Sprintf("G0A1%012X", fnv(cfg.Name)&0xFFFFFFFFFFFF)
	}
	if cfg.Module == "" {
		cfg.Module = DefaultModule
	}
	if cfg.Firmware == "" {
		cfg.Firmware = DefaultFirmware
	}
	if cfg.Dialect == "" {
		cfg.Dialect = DefaultDialect
	}
	switch {
	case cfg.BootDelay == 0:
		cfg.BootDelay = DefaultBootDelay
	case cfg.BootDelay < 0:
		cfg.BootDelay = 0
	}
	if cfg.FlashWriteRate <= 0 {
		cfg.FlashWriteRate = DefaultFlashWriteRate
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "userdata"), 0o755); err != nil {
		return nil, fmt.Errorf("ack sim %s: %w", cfg.Name, err)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	m := &Module{cfg: cfg, tx: simline.NewPacer(cfg.Baud), rx: simline.NewPacer(cfg.Baud), fault: map[string]bool{}, busy: map[string]int{},
		rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))}
	if m.lock, err = os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		return nil, err
	}
	if err := unix.Flock(int(m.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		m.lock.Close()
		return nil, fmt.Errorf("ack sim %s: %s is in use by another simulator", cfg.Name, dir)
	}
	if m.am, m.as, err = pty.Open(); err != nil {
		m.lock.Close()
		return nil, fmt.Errorf("ack sim %s: opening pty: %w", cfg.Name, err)
	}
	m.portName = m.as.Name()
	if m.am, err = simline.Pollable(m.am); err != nil {
		m.as.Close()
		m.lock.Close()
		return nil, err
	}
	if err := simline.MakeRaw(m.as, 0); err != nil {
		m.Close()
		return nil, err
	}
	tmp := m.PortPath() + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(m.portName, tmp); err != nil {
		m.Close()
		return nil, err
	}
	if err := os.Rename(tmp, m.PortPath()); err != nil {
		m.Close()
		return nil, err
	}
	m.wg.Add(1)
	go m.pumpIn()
	m.mu.Lock()
	m.powered = true
	m.scheduleBoot(cfg.BootDelay)
	m.mu.Unlock()
	return m, nil
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Name, DSN, PortPath and the storage paths.
func (m *Module) Name() string        { return m.cfg.Name }
func (m *Module) DSN() string         { return m.cfg.DSN }
func (m *Module) PortPath() string    { return filepath.Join(m.cfg.Dir, "tty") }
func (m *Module) CertPath() string    { return filepath.Join(m.cfg.Dir, "cert.pem") }
func (m *Module) KeyPath() string     { return filepath.Join(m.cfg.Dir, "key.pem") }
func (m *Module) UserDataDir() string { return filepath.Join(m.cfg.Dir, "userdata") }

func (m *Module) logf(format string, a ...any) {
	if m.cfg.Logf != nil {
		m.cfg.Logf(m.cfg.Name+": "+format, a...)
	}
}

// Powered reports whether the module has power.
func (m *Module) Powered() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.powered
}

// Stats returns the counters.
func (m *Module) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// SetLineFaults sets the line's per-byte fault probabilities.
func (m *Module) SetLineFaults(f LineFaults) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = f
}

// ArmPowerCut arms a one-shot power cut.
func (m *Module) ArmPowerCut(c PowerCut) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut = &c
}

// SetFault switches a module fault (the Fault* constants).
func (m *Module) SetFault(name string, on bool) error {
	switch name {
	case FaultBadCSRCurve, FaultTextOnly, FaultSilent:
	default:
		return fmt.Errorf("ack sim: unknown fault %q", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault[name] = on
	return nil
}

// SetBusy makes the module answer the next n new requests for verb with ERR code=busy, without
// carrying them out, as a module still writing flash does.
func (m *Module) SetBusy(verb string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy[verb] = n
}

// takeBusy reports whether this request for verb is to be answered busy.
func (m *Module) takeBusy(verb string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy[verb] <= 0 {
		return false
	}
	m.busy[verb]--
	m.stats.Busy++
	return true
}

func (m *Module) faultOn(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fault[name]
}

// PowerOff cuts the power at once: whatever the module was doing stops, RAM is lost.
func (m *Module) PowerOff() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cutLocked()
	return nil
}

// PowerOn powers a module that is off; it boots after BootDelay.
func (m *Module) PowerOn() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("ack sim: closed")
	}
	if !m.powered {
		m.powered = true
		m.scheduleBoot(m.cfg.BootDelay)
		m.logf("power on")
	}
	return nil
}

// Reboot resets the module.
func (m *Module) Reboot() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.restartLocked()
	return nil
}

// ServePower serves the module's power switch on <Dir>/power.sock.
func (m *Module) ServePower() (*simpower.Server, error) {
	return simpower.Serve(filepath.Join(m.cfg.Dir, "power.sock"), m)
}

// Close powers the module off and stops the simulator; storage stays.
func (m *Module) Close() error {
	m.closeMu.Do(func() {
		m.mu.Lock()
		m.cutLocked()
		m.closed = true
		m.mu.Unlock()
		m.txMu.Lock() // a re-enumeration (reenum.go) swaps them under txMu
		am, as := m.am, m.as
		m.txMu.Unlock()
		// Off the bus: the stable name goes before the pseudo-terminal's number is free again.
		_ = os.Remove(m.PortPath())
		am.Close()
		m.wg.Wait()
		as.Close()
		m.lock.Close()
	})
	return nil
}

// cutLocked removes power; m.mu held.
func (m *Module) cutLocked() {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	if m.powered {
		m.logf("power off")
	}
	m.powered = false
	m.gen++
	if m.run != nil {
		close(m.run.quit)
		m.run = nil
	}
}

func (m *Module) restartLocked() {
	if !m.powered {
		return
	}
	m.cutLocked()
	m.powered = true
	m.scheduleBoot(m.cfg.BootDelay)
}

func (m *Module) scheduleBoot(d time.Duration) {
	g := m.gen
	m.timer = time.AfterFunc(d, func() { m.boot(g) })
}

// boot starts the firmware: RAM state, boot log, BOOT event.
func (m *Module) boot(g uint64) {
	m.mu.Lock()
	if !m.powered || m.gen != g || m.closed {
		m.mu.Unlock()
		return
	}
	r := &runState{m: m, gen: g, in: make(chan []byte, 256), quit: make(chan struct{})}
	m.run = r
	m.stats.Boots++
	m.wg.Add(1) // under mu: Close, which waits for wg, cannot have begun waiting yet
	m.mu.Unlock()
	torn := ""
	if _, err := os.Stat(m.CertPath() + ".tmp"); err == nil {
		_ = os.Remove(m.CertPath() + ".tmp")
		torn = "cert: discarded an unfinished certificate write\r\n"
	}
	info := encodeText("dsn", m.cfg.DSN, "fw", m.cfg.Firmware, "state", m.state())
	r.send(fmt.Sprintf("\r\nACK module %s fw %s booting\r\ndsn %s\r\n%s", m.cfg.Module, m.cfg.Firmware, m.cfg.DSN, torn))
	r.sendFrame("00", "BOOT", info)
	go r.loop()
}

// CutPower is used by the firmware at an armed cut point.
func (m *Module) powerCut(restore time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.PowerCuts++
	m.cutLocked()
	if restore > 0 && !m.closed {
		m.timer = time.AfterFunc(restore, func() { _ = m.PowerOn() })
	}
}

// live reports whether output of generation g may still go out.
func (m *Module) live(g uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.powered && m.gen == g && !m.fault[FaultSilent]
}

// shape applies the line faults to bytes crossing the line.
func (m *Module) shape(p []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.faults
	if f == (LineFaults{}) {
		return p
	}
	out := make([]byte, 0, len(p)+4)
	for _, b := range p {
		switch {
		case f.Drop > 0 && m.rng.Float64() < f.Drop:
			continue
		case f.Corrupt > 0 && m.rng.Float64() < f.Corrupt:
			b ^= byte(1 + m.rng.UintN(255))
		}
		out = append(out, b)
		if f.Noise > 0 && m.rng.Float64() < f.Noise {
			out = append(out, byte(m.rng.UintN(256)))
		}
	}
	return out
}

// sendRaw puts p on the module->harness line (paced, shaped) unless generation g lost power.
func (m *Module) sendRaw(p []byte, g uint64) {
	m.txMu.Lock()
	defer m.txMu.Unlock()
	for first := true; len(p) > 0; first = false {
		n := min(len(p), simline.ChunkSize(m.cfg.Baud, 5*time.Millisecond))
		chunk := p[:n]
		p = p[n:]
		if !m.live(g) {
			return
		}
		if first {
			m.tx.Transmit(n)
		} else {
			m.tx.Continue(n) // one write's bytes cross the line back to back
		}
		out := m.shape(chunk)
		m.mu.Lock()
		m.stats.BytesOut += int64(len(out))
		m.mu.Unlock()
		_ = m.am.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = m.am.Write(out)
	}
}

// pumpIn carries what the harness sends to the firmware, at the line rate.
func (m *Module) pumpIn() {
	defer m.wg.Done()
	buf := make([]byte, 4096)
	for {
		am := m.master()
		n, err := am.Read(buf)
		for p, first := buf[:n], true; len(p) > 0; first = false {
			k := min(len(p), simline.ChunkSize(m.cfg.Baud, 5*time.Millisecond))
			chunk := p[:k]
			p = p[k:]
			if first {
				m.rx.Transmit(k)
			} else {
				m.rx.Continue(k)
			}
			chunk = m.shape(chunk)
			m.mu.Lock()
			m.stats.BytesIn += int64(len(chunk))
			r := m.run
			keep, cut := m.cutAnyLocked(len(chunk)) // faults.go
			m.mu.Unlock()
			if cut != nil {
				// The bytes before the cut point arrive; the rest is lost with the power.
				chunk, p = chunk[:keep], nil
			}
			if r != nil && len(chunk) > 0 { // off or booting: input is lost
				select {
				case r.in <- append([]byte(nil), chunk...):
				case <-r.quit:
				}
			}
			if cut != nil {
				m.logf("power cut (armed, any byte)")
				m.powerCut(cut.RestoreAfter)
			}
		}
		if err != nil && m.master() != am {
			continue // re-enumerated (reenum.go): read the new master
		}
		if err != nil {
			return
		}
	}
}

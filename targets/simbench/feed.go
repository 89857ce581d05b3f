package simbench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"hilbench/targets/acs/sim"
	"hilbench/targets/simpower"
)

// The feed: each simulated slot of `hil sim --feed M` presents M fresh boards one after another,
// as an operator at an end-of-line station swaps DUTs in a fixture. A board leaves when the slot's
// power is switched off and stays off for RemoveGrace (the station's "release: power_off" at the
// end of a test; a power cycle's short off time is not a removal); the next one is inserted
// InsertDelay later, with new storage and a new serial number, and powered. While the slot is
// empty the console is silent and the power switch refuses to switch on.

// Feed defaults.
const (
	DefaultInsertDelay = 500 * time.Millisecond
	DefaultRemoveGrace = time.Second
)

// Slot is one feeding slot: the simulated device that stands for the board in it, and the count
// of boards still to come.
type Slot struct {
	Name string
	dev  *sim.Device

	insertDelay, removeGrace time.Duration

	mu        sync.Mutex
	present   bool
	left      int         // boards still to insert after the current one
	offTimer  *time.Timer // running while the power is off with a board in
	presented []string    // serial numbers, in order
	stopped   bool
	done      chan struct{} // closed when the last board has left
}

var (
	_ simpower.Switch   = (*Slot)(nil)
	_ simpower.Injector = (*Slot)(nil)
)

// NewSerial is a fresh board serial number: "HS" and 10 random hexadecimal digits.
func NewSerial() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "HS" + strings.ToUpper(hex.EncodeToString(b[:]))
}

func newSlot(name string, dev *sim.Device, n int, insert, grace time.Duration) (*Slot, error) {
	if insert <= 0 {
		insert = DefaultInsertDelay
	}
	if grace <= 0 {
		grace = DefaultRemoveGrace
	}
	s := &Slot{Name: name, dev: dev, insertDelay: insert, removeGrace: grace, left: n - 1, done: make(chan struct{})}
	// The first board: fresh, even where an earlier run left storage behind.
	if err := dev.PowerOff(); err != nil {
		return nil, err
	}
	if err := s.insertLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// insertLocked puts a new board in and powers it (caller holds mu, or owns s alone).
func (s *Slot) insertLocked() error {
	serial := NewSerial()
	if err := s.dev.Replace(serial); err != nil {
		return err
	}
	s.present = true
	s.presented = append(s.presented, serial)
	return s.dev.PowerOn()
}

// PowerOn switches a slot with a board in it on (a power cycle's second half).
func (s *Slot) PowerOn() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.present {
		return errors.New("slot " + s.Name + " is empty")
	}
	if s.offTimer != nil {
		s.offTimer.Stop()
		s.offTimer = nil
	}
	return s.dev.PowerOn()
}

// PowerOff switches the slot off; if it stays off for the grace time the board is taken out.
func (s *Slot) PowerOff() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.dev.PowerOff(); err != nil {
		return err
	}
	if s.present && s.offTimer == nil {
		s.offTimer = time.AfterFunc(s.removeGrace, s.remove)
	}
	return nil
}

// Powered reports the slot's power.
func (s *Slot) Powered() bool { return s.dev.Powered() }

// InjectFault passes a fault request to the board in the slot.
func (s *Slot) InjectFault(f simpower.Fault) error {
	inj, ok := any(s.dev).(simpower.Injector)
	if !ok {
		return errors.New("this simulator takes no fault requests")
	}
	return inj.InjectFault(f)
}

// Pull takes the board out now, powered or not (a DUT pulled mid-test): its console goes silent.
func (s *Slot) Pull() error {
	s.mu.Lock()
	err := s.dev.PowerOff()
	if s.offTimer != nil {
		s.offTimer.Stop()
		s.offTimer = nil
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.remove()
	return nil
}

// remove takes the board out and schedules the next one.
func (s *Slot) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offTimer = nil
	if !s.present || s.dev.Powered() {
		return
	}
	s.present = false
	if s.left <= 0 || s.stopped {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
		return
	}
	s.left--
	time.AfterFunc(s.insertDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped || s.present {
			return
		}
		if err := s.insertLocked(); err != nil {
			fmt.Fprintf(os.Stderr, "simbench: slot %s: inserting a board: %v\n", s.Name, err)
		}
	})
}

// Device is the simulator standing for the slot's boards (fault injection, power).
func (s *Slot) Device() *sim.Device { return s.dev }

// Serial is the serial number of the board in the slot ("" while empty).
func (s *Slot) Serial() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.present {
		return ""
	}
	return s.presented[len(s.presented)-1]
}

// Presented lists the serial numbers of every board the slot has presented so far.
func (s *Slot) Presented() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.presented...)
}

// Done is closed when the slot's last board has been taken out.
func (s *Slot) Done() <-chan struct{} { return s.done }

func (s *Slot) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.offTimer != nil {
		s.offTimer.Stop()
	}
}

// servePower serves a feeding slot's power switch on the device's usual socket.
func (s *Slot) servePower() (*simpower.Server, error) {
	return simpower.Serve(filepath.Join(s.dev.Dir(), "power.sock"), s)
}

// stableSerial is the serial number a device of a bench without feed keeps across runs: the one
// its storage holds, or a new one.
func stableSerial(dir string) string {
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "serial")); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s
		}
	}
	return NewSerial()
}

package power

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hilbench/targets/simpower"
)

// fakeSwitch is a simulator's power, logging what it was asked.
type fakeSwitch struct {
	mu    sync.Mutex
	on    bool
	log   []string
	onErr error
}

func (f *fakeSwitch) PowerOn() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "on")
	if f.onErr != nil {
		return f.onErr
	}
	f.on = true
	return nil
}

func (f *fakeSwitch) PowerOff() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "off")
	f.on = false
	return nil
}

func (f *fakeSwitch) Powered() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on
}

func (f *fakeSwitch) Log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, ",")
}

func simServer(t *testing.T, sw simpower.Switch) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "power.sock")
	srv, err := simpower.Serve(path, sw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path
}

func TestSim(t *testing.T) {
	sw := &fakeSwitch{}
	p, err := Open(Config{Type: "sim", Socket: simServer(t, sw), OffTime: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if s, err := p.State(ctx); err != nil || s != Off {
		t.Fatalf("State %v %v", s, err)
	}
	if err := p.On(ctx); err != nil || !sw.Powered() {
		t.Fatalf("On: %v, powered %v", err, sw.Powered())
	}
	if err := p.Off(ctx); err != nil || sw.Powered() {
		t.Fatalf("Off: %v, powered %v", err, sw.Powered())
	}
	if err := p.Cycle(ctx); err != nil || !sw.Powered() {
		t.Fatalf("Cycle: %v, powered %v", err, sw.Powered())
	}
	if got := sw.Log(); got != "on,off,off,on" {
		t.Fatalf("switch saw %s", got)
	}
}

func TestSimErrors(t *testing.T) {
	sw := &fakeSwitch{onErr: errors.New("rail shorted")}
	p, err := NewSim(Config{Socket: simServer(t, sw)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.On(context.Background()); err == nil || !strings.Contains(err.Error(), "on: rail shorted") {
		t.Fatalf("On: %v", err)
	}
	// An off time the server refuses comes back as its message.
	p.offTime = 2 * time.Minute
	if err := p.Cycle(context.Background()); err == nil || !strings.Contains(err.Error(), "is not 0..60000 milliseconds") {
		t.Fatalf("Cycle: %v", err)
	}
	gone, _ := NewSim(Config{Socket: filepath.Join(t.TempDir(), "nobody.sock")})
	if _, err := gone.State(context.Background()); err == nil || !strings.Contains(err.Error(), "nobody.sock") {
		t.Fatalf("State without a server: %v", err)
	}
}

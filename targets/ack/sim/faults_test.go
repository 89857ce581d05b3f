package sim

import (
	"bufio"
	"os"
	"testing"
	"time"

	"go.bug.st/serial"

	"hilbench/targets/simpower"
)

// TestCutAtAnyByte: a cut armed at any byte counts everything the module receives from arming
// on, fires once at that byte, and the power comes back after the restore time.
func TestCutAtAnyByte(t *testing.T) {
	t.Parallel()
	m, c := startModule(t, nil)
	c.waitBoot()
	if err := m.InjectFault(simpower.Fault{Kind: simpower.FaultCut, Phase: PhaseAny, AtByte: 10, Restore: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.port.Write([]byte("0123456")); err != nil { // 7 bytes: not yet
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if !m.Powered() || m.Stats().PowerCuts != 0 {
		t.Fatalf("cut before its byte: powered %v, cuts %d", m.Powered(), m.Stats().PowerCuts)
	}
	if _, err := c.port.Write([]byte("789abc")); err != nil { // byte 10 is in here
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().PowerCuts != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the armed cut never fired")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for !m.Powered() {
		if time.Now().After(deadline) {
			t.Fatal("the power did not come back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.waitBoot()
	if _, err := c.port.Write([]byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := m.Stats().PowerCuts; n != 1 {
		t.Errorf("%d cuts: a fired cut stays disarmed", n)
	}
}

func TestInjectFaultNoiseAndClear(t *testing.T) {
	t.Parallel()
	m, _ := startModule(t, nil)
	if err := m.InjectFault(simpower.Fault{Kind: simpower.FaultNoise, Rate: 1e-4}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	got := m.faults
	m.mu.Unlock()
	if got != (LineFaults{Corrupt: 1e-4}) {
		t.Errorf("noise 1e-4 set line faults %+v", got)
	}
	if err := m.InjectFault(simpower.Fault{Kind: simpower.FaultCut, Phase: "flash", AtByte: 1}); err == nil {
		t.Error("a flash cut accepted by a module without a boot ROM")
	}
	_ = m.InjectFault(simpower.Fault{Kind: simpower.FaultCut, Phase: "commit", AtByte: 1})
	if err := m.InjectFault(simpower.Fault{Kind: simpower.FaultClear}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.faults != (LineFaults{}) || m.cut != nil {
		t.Errorf("clear left %+v, cut %+v", m.faults, m.cut)
	}
}

// TestReenumerate: the old port is hung up, the module answers on the port its name now leads to.
func TestReenumerate(t *testing.T) {
	t.Parallel()
	m, c := startModule(t, nil)
	c.waitBoot()
	before, _ := os.Readlink(m.PortPath())
	if err := m.InjectFault(simpower.Fault{Kind: simpower.FaultReenumerate}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Readlink(m.PortPath())
	if err != nil || after == before {
		t.Fatalf("port %s -> %q (%v), was %q", m.PortPath(), after, err, before)
	}
	if _, err := c.port.Write([]byte(c.raw("01", "HELLO", nil))); err == nil {
		buf := make([]byte, 64)
		_ = c.port.SetReadTimeout(200 * time.Millisecond)
		if n, err := c.port.Read(buf); err == nil && n > 0 {
			t.Errorf("the old port still carries %q", buf[:n])
		}
	}
	p, err := serial.Open(m.PortPath(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	_ = p.SetReadTimeout(5 * time.Second)
	c2 := &client{t: t, port: p, rd: bufio.NewReader(p)}
	if status, _ := c2.call("HELLO", nil); status != "OK" {
		t.Errorf("HELLO on the new port: %s", status)
	}
}

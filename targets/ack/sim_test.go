package ack_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"hilbench/harness/device"
	"hilbench/targets/ack"
	acksim "hilbench/targets/ack/sim"
)

// startSim starts a simulated module and opens the driver on its port.
func startSim(t *testing.T, seed uint64) (*acksim.Module, *ack.Module) {
	t.Helper()
	m, err := acksim.Start(acksim.Config{Name: "mod", Dir: filepath.Join(t.TempDir(), "mod"), BootDelay: 5 * time.Millisecond, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	prof, err := testProfile()
	if err != nil {
		t.Fatal(err)
	}
	port, err := serial.Open(m.PortPath(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	// How long the driver pauses for a busy module is not under test: that it pauses and gives up is.
	mod := ack.New(port, ack.Config{Name: "mod", Profile: prof, BusyPause: 5 * time.Millisecond, BusyPauseMax: 40 * time.Millisecond}, nil)
	t.Cleanup(func() { mod.Close() })
	return m, mod
}

// A module answering code=busy did not carry the request out: the driver asks again after a pause
// and provisioning completes, with one signature and one commit.
func TestProvisionWaitsOutBusy(t *testing.T) {
	t.Parallel()
	st := newStation(t)
	sim, mod := startSim(t, 7)
	sim.SetBusy("DATA", 2)
	sim.SetBusy("COMMIT", 3)
	res, err := mod.Provision(ctx(t), st, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := mod.LineStats().Busy; got != 5 {
		t.Errorf("driver counted %d busy answers; the module sent 5", got)
	}
	if s := sim.Stats(); s.Busy != 5 || s.Commits != 1 {
		t.Errorf("module stats %+v; want 5 busy answers and 1 commit", s)
	}
	if st.calls.Load() != 1 {
		t.Errorf("%d signatures; want 1", st.calls.Load())
	}
	stored, err := os.ReadFile(sim.CertPath())
	if err != nil || string(stored) != string(res.Issued.ChainPEM) {
		t.Errorf("stored chain differs from the issued one (err %v)", err)
	}
}

// A module that stays busy is an error naming the verb and the tries, and nothing is committed.
func TestProvisionGivesUpOnAlwaysBusy(t *testing.T) {
	t.Parallel()
	st := newStation(t)
	sim, mod := startSim(t, 7)
	sim.SetBusy("COMMIT", 1000)
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := mod.Provision(c, st, device.Options{})
	var me *ack.ModuleError
	if !errors.As(err, &me) || me.Code != "busy" || me.Verb != "COMMIT" {
		t.Fatalf("err = %v; want COMMIT's code=busy", err)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "still busy after 8 tries") {
		t.Errorf("err = %v; want the number of tries", err)
	}
	if s := sim.Stats(); s.Busy != ack.BusyTries || s.Commits != 0 {
		t.Errorf("module stats %+v; want %d busy answers and no commit", s, ack.BusyTries)
	}
	if _, err := os.Stat(sim.CertPath()); !os.IsNotExist(err) {
		t.Errorf("a certificate area was written: %v", err)
	}
}

// On a line too noisy for long frames (a byte error rate of 3e-3) chunks are sent again shorter
// and every module ends provisioned with the chain it was issued.
func TestProvisionShrinksChunksOnANoisyLine(t *testing.T) {
	t.Parallel()
	st := newStation(t)
	shrinks := 0
	for seed := range uint64(6) {
		sim, mod := startSim(t, 100+seed)
		sim.SetLineFaults(acksim.LineFaults{Noise: 0.9e-3, Drop: 0.9e-3, Corrupt: 1.2e-3})
		res, err := mod.Provision(ctx(t), st, device.Options{})
		if err != nil {
			t.Fatalf("module %d: %v (stats %+v)", seed, err, mod.LineStats())
		}
		sim.SetLineFaults(acksim.LineFaults{})
		stored, err := os.ReadFile(sim.CertPath())
		if err != nil || string(stored) != string(res.Issued.ChainPEM) {
			t.Errorf("module %d: stored chain differs from the issued one (err %v)", seed, err)
		}
		shrinks += mod.LineStats().Shrinks
	}
	if shrinks == 0 {
		t.Error("no chunk was sent again shorter at a byte error rate of 3e-3")
	}
	t.Logf("%d chunks sent again shorter over 6 modules", shrinks)
}

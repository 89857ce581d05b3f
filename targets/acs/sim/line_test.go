package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// transfer times an 11520-byte answer of the device.
func transfer(t *testing.T, baud int) time.Duration {
	d := startDevice(t, func(c *Config) { c.Baud = baud })
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	start := time.Now()
	out := c.mustRun("head -c 11520 /dev/zero | tr '\\0' x")
	el := time.Since(start)
	if out != strings.Repeat("x", 11520) {
		t.Errorf("got %d bytes, want 11520 x", len(out))
	}
	return el
}

func TestLineRate(t *testing.T) {
	t.Parallel()
	paced := transfer(t, 115200)
	free := transfer(t, 0)
	// 11520 bytes + ~100 of echo, markers and prompt at 11520 B/s: ~1.01 s.
	t.Logf("11520 bytes: %v at 115200 baud, %v unlimited", paced, free)
	if paced < 900*time.Millisecond || paced > 20*time.Second {
		t.Errorf("11520 bytes at 115200 baud took %v; want about 1 s", paced)
	}
}

// TestManyDevices starts 32 devices as the lead's bench does, talks to each
// and reports what they cost.
func TestManyDevices(t *testing.T) {
	n := 32
	if testing.Short() {
		n = 4
	}
	grBefore := runtime.NumGoroutine()
	fdsBefore := countFDs()
	start := time.Now()
	devs, err := StartMany(t.TempDir(), n, Config{Profile: profilePath, Baud: 115200, BootDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	consoles := make([]*console, n)
	for i, d := range devs {
		if d.Name() != "dut"+strconv.Itoa(i+1) || filepath.Base(d.Dir()) != d.Name() {
			t.Errorf("device %d: name %s dir %s", i, d.Name(), d.Dir())
		}
		consoles[i] = openConsole(t, d, 115200)
	}
	for i, c := range consoles {
		c.sync(20 * time.Second)
		if out := c.mustRun("echo $PS1"); out != fmt.Sprintf("root@dut%d:/#\n", i+1) {
			t.Errorf("dut%d PS1 = %q", i+1, out)
		}
	}
	ready := time.Since(start)

	// One more round, now that all are up: the steady-state cost of a command.
	roundStart := time.Now()
	for _, c := range consoles {
		c.mustRun("true")
	}
	round := time.Since(roundStart)

	var procs int
	var rss int64
	for _, d := range devs {
		for _, pid := range sessionMembers(d.ShellPID()) {
			if st, ok := readStat(pid); ok {
				procs++
				rss += st.rssKiB
			}
		}
	}
	t.Logf("%d devices: started and answered a first command each in %v (sequential test client); one more command on each: %v",
		n, ready, round)
	// The test's serial ports hold 3 fds each (port + close pipe) and no goroutine.
	t.Logf("per idle device: %.1f processes, %d KiB RSS of processes, %.1f goroutines, %.1f fds of the simulator",
		float64(procs)/float64(n), rss/int64(n),
		float64(runtime.NumGoroutine()-grBefore)/float64(n),
		float64(countFDs()-fdsBefore-3*n)/float64(n))
	if procs != n {
		t.Errorf("%d processes for %d idle devices, want one shell each", procs, n)
	}
}

func countFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

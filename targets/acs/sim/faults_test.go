package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDeviceFaults(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	p := newPKI(t)
	c.mustRun(keyGen)
	csr := c.mustRun(getCSR)

	if err := d.SetFault("bogus", true); err == nil {
		t.Errorf("SetFault accepted an unknown fault")
	}

	t.Run(FaultCSRTruncated, func(t *testing.T) {
		must(t, d.SetFault(FaultCSRTruncated, true))
		defer d.SetFault(FaultCSRTruncated, false)
		out, rc := c.run(getCSR, 5*time.Second)
		if rc != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE REQUEST-----") ||
			strings.Contains(out, "-----END") || len(out) > len(csr)/2+4 || len(out) < len(csr)/2-4 {
			t.Errorf("exit %d, %d bytes %q; want exit 0 and the first half of a ~%d-byte CSR", rc, len(out), out, len(csr))
		}
	})
	t.Run(FaultCSRMissing, func(t *testing.T) {
		must(t, d.SetFault(FaultCSRMissing, true))
		defer d.SetFault(FaultCSRMissing, false)
		if out, rc := c.run(getCSR, 5*time.Second); rc != 0 || out != "" {
			t.Errorf("exit %d, %q; want exit 0 and nothing", rc, out)
		}
	})
	chain := p.issue(t, csr)
	path := filepath.Join(d.DataDir(), "dut1.pem")
	must(t, os.WriteFile(path, chain, 0o644))
	t.Run(FaultSetCertReject, func(t *testing.T) {
		must(t, d.SetFault(FaultSetCertReject, true))
		defer d.SetFault(FaultSetCertReject, false)
		out, rc := c.run("ace hal dha set_cert "+path, 5*time.Second)
		if rc != 1 || !strings.Contains(out, "ace: dha: set_cert:") {
			t.Errorf("exit %d, %q; want exit 1 and an error", rc, out)
		}
		if _, err := os.Stat(filepath.Join(d.DHADir(), "dha_chain.pem")); err == nil {
			t.Errorf("a rejected chain was stored")
		}
	})
	c.mustRun("ace hal dha set_cert " + path)
	t.Run(FaultChainCorrupt, func(t *testing.T) {
		must(t, d.SetFault(FaultChainCorrupt, true))
		defer d.SetFault(FaultChainCorrupt, false)
		out, rc := c.run(getChain, 5*time.Second)
		if rc != 0 || len(out) != len(chain) {
			t.Fatalf("exit %d, %d bytes; want exit 0 and %d bytes", rc, len(out), len(chain))
		}
		var diff []int
		for i := range chain {
			if out[i] != chain[i] {
				diff = append(diff, i)
			}
		}
		firstEnd := bytes.Index(chain, []byte("-----END CERTIFICATE-----"))
		if len(diff) != 1 || diff[0] > firstEnd {
			t.Errorf("changed bytes at %v; want exactly one inside the first certificate (< %d)", diff, firstEnd)
		}
		// The stored chain itself is intact.
		stored, _ := os.ReadFile(filepath.Join(d.DHADir(), "dha_chain.pem"))
		if !bytes.Equal(stored, chain) {
			t.Errorf("chain_corrupt changed the stored chain")
		}
	})
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain differs once the faults are off")
	}

	t.Run(FaultNoPrompt, func(t *testing.T) {
		must(t, d.SetFault(FaultNoPrompt, true))
		must(t, d.Reboot())
		if _, err := c.until(regexp.MustCompile(`built-in shell \(ash\)`), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		c.write("\n")
		if got := c.quiet(300 * time.Millisecond); bytes.Contains(got, []byte(c.prompt)) {
			t.Errorf("prompt shown despite no_prompt: %q", got)
		}
		prompt := c.prompt
		c.prompt = ""
		if out, _ := c.run("echo alive", 5*time.Second); out != "alive\n" {
			t.Errorf("shell without prompt: %q", out)
		}
		c.prompt = prompt
		must(t, d.SetFault(FaultNoPrompt, false))
		must(t, d.Reboot())
		c.sync(10 * time.Second)
	})
}

func TestLineFaults(t *testing.T) {
	t.Parallel()
	d := startDevice(t, func(c *Config) { c.Seed = 42 })
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)

	t.Run("silent", func(t *testing.T) {
		d.SetSilent(true)
		marker := filepath.Join(d.DataDir(), "silent")
		c.write("touch " + marker + "\n")
		// The device still runs the command.
		for i := 0; i < 500; i++ {
			if _, err := os.Stat(marker); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Errorf("silent device did not run the command: %v", err)
		}
		if got := c.quiet(200 * time.Millisecond); len(got) != 0 {
			t.Errorf("silent device sent %q", got)
		}
		d.SetSilent(false)
		c.sync(5 * time.Second)
	})

	t.Run("inject", func(t *testing.T) {
		d.InjectNoise(64)
		got := c.quiet(300 * time.Millisecond)
		if len(got) != 64 {
			t.Errorf("InjectNoise(64) sent %d bytes: %q", len(got), got)
		}
		c.sync(5 * time.Second)
	})

	t.Run("rate 1", func(t *testing.T) {
		d.SetNoiseRate(1)
		c.write("echo hello\n")
		got := c.atLeast(len("echo hello\r\nhello\r\n"), 10*time.Second)
		d.SetNoiseRate(0)
		if len(got) < len("echo hello\r\nhello\r\n") || bytes.Contains(got, []byte("hello")) {
			t.Errorf("with noise rate 1 got %q; want garbage only", got)
		}
		c.sync(5 * time.Second)
	})

	t.Run("rate 0.25", func(t *testing.T) {
		d.SetNoiseRate(0.25)
		c.write("head -c 4000 /dev/zero | tr '\\0' x\n")
		got := c.atLeast(4000, 10*time.Second)
		d.SetNoiseRate(0)
		// 4000 x in the output (one more in the echo); 3/4 should survive.
		n := bytes.Count(got, []byte("x"))
		t.Logf("noise 0.25: %d of ~4001 'x' survived", n)
		if n < 2700 || n > 3300 {
			t.Errorf("%d of 4001 'x' survived noise rate 0.25; want about 3000", n)
		}
		c.sync(5 * time.Second)
	})
}

func TestPortSpeedMismatchIsGarbage(t *testing.T) {
	t.Parallel()
	d := startDevice(t, func(c *Config) { c.Baud = 115200 })
	c := openConsole(t, d, 9600)
	for i := 0; i < 3; i++ {
		c.write("\n")
	}
	got := c.atLeast(1, 5*time.Second)
	if len(got) == 0 || bytes.Contains(got, []byte("root@")) {
		t.Errorf("at the wrong speed got %q; want garbage", got)
	}
	for _, b := range got {
		if b < 0x80 {
			t.Errorf("byte %#x at the wrong speed looks like text", b)
			break
		}
	}
	// Set right, it works (the garbage typed before is just a bad command).
	if err := c.port.SetMode(serialMode(115200)); err != nil {
		t.Fatal(err)
	}
	c.write("\x03") // ^C drops the garbage line
	c.sync(10 * time.Second)
	if out := c.mustRun("echo ok"); out != "ok\n" {
		t.Errorf("echo = %q", out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package sim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

// The helpers below are a deliberately tiny console client written for these
// tests only: write a line, read until a marker or the prompt. They share
// nothing with the real driver.

const profilePath = "../../../fixtures/profiles/device.conf"

// startDevice starts a device in a fresh temp dir and closes it at cleanup.
func startDevice(t *testing.T, mod func(*Config)) *Device {
	t.Helper()
	cfg := Config{
		Name:      "dut1",
		Dir:       filepath.Join(t.TempDir(), "dut1"),
		Profile:   profilePath,
		BootDelay: 20 * time.Millisecond,
		Logf:      t.Logf,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type console struct {
	t      testing.TB
	port   serial.Port
	prompt string
	buf    []byte // received, not yet consumed, cursor queries removed
}

// openConsole opens the device's port as the harness would open a real one.
func openConsole(t testing.TB, d *Device, baud int) *console {
	t.Helper()
	p, err := serial.Open(d.PortPath(), &serial.Mode{BaudRate: baud})
	if err != nil {
		t.Fatalf("opening %s: %v", d.PortPath(), err)
	}
	if err := p.SetReadTimeout(20 * time.Millisecond); err != nil {
		t.Fatalf("SetReadTimeout: %v", err)
	}
	c := &console{t: t, port: p, prompt: d.Config().Prompt}
	t.Cleanup(func() { p.Close() })
	return c
}

func serialMode(baud int) *serial.Mode { return &serial.Mode{BaudRate: baud} }

var errTimeout = errors.New("timeout")

// fill reads what is available (up to one read timeout).
func (c *console) fill() error {
	b := make([]byte, 4096)
	n, err := c.port.Read(b)
	if err != nil {
		return err
	}
	c.buf = append(c.buf, b[:n]...)
	// busybox asks for the cursor position after each prompt; a terminal
	// would answer, this client ignores it.
	c.buf = bytes.ReplaceAll(c.buf, []byte("\x1b[6n"), nil)
	return nil
}

// until consumes and returns everything up to and including the first match
// of re.
func (c *console) until(re *regexp.Regexp, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if loc := re.FindIndex(c.buf); loc != nil {
			s := string(c.buf[:loc[1]])
			c.buf = c.buf[loc[1]:]
			return s, nil
		}
		if time.Now().After(deadline) {
			return string(c.buf), fmt.Errorf("%w waiting for %q; have %q", errTimeout, re, c.buf)
		}
		if err := c.fill(); err != nil {
			return string(c.buf), err
		}
	}
}

func (c *console) write(s string) {
	c.t.Helper()
	if _, err := c.port.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sync presses Enter until a prompt answers.
func (c *console) sync(timeout time.Duration) {
	c.t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(c.prompt) + `$`)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c.write("\n")
		if _, err := c.until(re, 500*time.Millisecond); err == nil {
			// Drain prompts answering earlier presses.
			for {
				if _, err := c.until(re, 100*time.Millisecond); err != nil {
					break
				}
			}
			c.buf = nil
			return
		}
	}
	c.t.Fatalf("no prompt %q within %v; got %q", c.prompt, timeout, c.buf)
}

var endRE = regexp.MustCompile(`@@END:(\d+)\r\n`)

// run runs cmd and returns its output (stdout and stderr as the terminal
// shows them, CRLF turned into LF) and exit status. The markers are typed
// with "" inside so that their echo does not match.
func (c *console) run(cmd string, timeout time.Duration) (string, int) {
	c.t.Helper()
	c.write(`echo @@B""EGIN; ` + cmd + `; echo "@@E""ND:$?"` + "\n")
	if _, err := c.until(regexp.MustCompile(`@@BEGIN\r\n`), timeout); err != nil {
		c.t.Fatalf("running %q: %v", cmd, err)
	}
	s, err := c.until(endRE, timeout)
	if err != nil {
		c.t.Fatalf("running %q: %v", cmd, err)
	}
	m := endRE.FindStringSubmatchIndex(s)
	rc, _ := strconv.Atoi(s[m[2]:m[3]])
	out := strings.ReplaceAll(s[:m[0]], "\r\n", "\n")
	if c.prompt != "" {
		if _, err := c.until(regexp.MustCompile(regexp.QuoteMeta(c.prompt)), timeout); err != nil {
			c.t.Fatalf("no prompt after %q: %v", cmd, err)
		}
	}
	return out, rc
}

// mustRun runs cmd and fails the test unless it exits 0.
func (c *console) mustRun(cmd string) string {
	c.t.Helper()
	out, rc := c.run(cmd, 10*time.Second)
	if rc != 0 {
		c.t.Fatalf("%q: exit %d: %s", cmd, rc, out)
	}
	return out
}

// openssl runs the real openssl on the host (the test's independent judge).
func openssl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// pki is a throw-away DAK for issuing device certificates in tests.
type pki struct {
	dir, key, cert string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	p := pki{dir: dir, key: filepath.Join(dir, "dak.key"), cert: filepath.Join(dir, "dak.pem")}
	openssl(t, dir, "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", p.key)
	openssl(t, dir, "req", "-new", "-x509", "-key", p.key, "-subj", "/CN=Test DAK", "-days", "30",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
		"-out", p.cert)
	return p
}

// issue signs csrPEM as the FFS provisioning guide does and returns the chain (device cert +
// DAK cert).
func (p pki) issue(t *testing.T, csrPEM string) []byte {
	t.Helper()
	csr := filepath.Join(p.dir, "dev.csr")
	crt := filepath.Join(p.dir, "dev.pem")
	if err := os.WriteFile(csr, []byte(csrPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	prof, _ := filepath.Abs(profilePath)
	openssl(t, p.dir, "x509", "-req", "-in", csr, "-extfile", prof, "-extensions", "req_ext",
		"-CA", p.cert, "-CAkey", p.key, "-days", "1825", "-sha256", "-set_serial", "0x1d2c3b4a",
		"-out", crt)
	leaf, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	dak, err := os.ReadFile(p.cert)
	if err != nil {
		t.Fatal(err)
	}
	return append(leaf, dak...)
}

// foreignCSR is a CSR for a key that is not the device's.
func foreignCSR(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	prof, _ := filepath.Abs(profilePath)
	openssl(t, dir, "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", "k.pem")
	return openssl(t, dir, "req", "-new", "-key", "k.pem", "-config", prof)
}

package sim

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of the boot ROM: lrzsz's sb (the independent judge) sends real
// YMODEM into loady; a tiny hand-written sender below covers what sb does
// not do on demand (bad CRC, repeats, sequence errors, CAN).

var romReadyRE = regexp.MustCompile(`## Ready for binary \(ymodem\) download to slot ([AB]) at (\d+) bps\.\.\.\r\n`)

// romPrompt waits for the boot ROM's banner and prompt.
func (c *console) romBanner(timeout time.Duration) {
	c.t.Helper()
	if _, err := c.until(regexp.MustCompile(`HILSIM boot ROM 1\.0\r\n=> `), timeout); err != nil {
		c.t.Fatal(err)
	}
}

// rom types a boot ROM command and returns its output (CRLF kept) up to the
// next prompt.
func (c *console) rom(cmd string, timeout time.Duration) string {
	c.t.Helper()
	c.write(cmd + "\r")
	if _, err := c.until(regexp.MustCompile(regexp.QuoteMeta(cmd+"\r\n")), timeout); err != nil {
		c.t.Fatalf("echo of %q: %v", cmd, err)
	}
	out, err := c.until(regexp.MustCompile(`=> $`), timeout)
	if err != nil {
		c.t.Fatalf("%q: %v", cmd, err)
	}
	return strings.TrimSuffix(out, "=> ")
}

// sbStart starts lrzsz's sb on the device's port (its own fd on the pty).
func sbStart(t testing.TB, d *Device, file string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	f, err := os.OpenFile(d.PortPath(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // sb has its own copy
	var stderr bytes.Buffer
	cmd := exec.Command("sb", "--ymodem", "-k", file)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sb: %v", err)
	}
	return cmd, &stderr
}

// loadySb runs loady with sb sending img and returns the boot ROM's report.
func loadySb(t testing.TB, c *console, d *Device, img []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "fw.img")
	if err := os.WriteFile(file, img, 0o644); err != nil {
		t.Fatal(err)
	}
	c.write("loady\r")
	if _, err := c.until(romReadyRE, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.buf = nil // a 'C' read along with the Ready line is sb's business
	cmd, stderr := sbStart(t, d, file)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sb: %v\n%s", err, stderr)
	}
	out, err := c.until(regexp.MustCompile(`=> $`), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storageHashes hashes every file under dha/ and data/.
func storageHashes(t *testing.T, d *Device) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, dir := range []string{d.DHADir(), d.DataDir()} {
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			sum := sha256.Sum256(b)
			m[p] = hex.EncodeToString(sum[:])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// imageOfSize builds an image of exactly n bytes.
func imageOfSize(version string, n int) []byte {
	over := len(BuildImage(version, nil))
	payload := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n-over]
	return BuildImage(version, payload)
}

func TestImageFormat(t *testing.T) {
	t.Parallel()
	img := BuildImage("v1.2", []byte("payload"))
	if !bytes.HasPrefix(img, []byte("HILSIM-FW version=v1.2\npayload")) || len(img) != 23+7+32 {
		t.Fatalf("BuildImage = %q", img)
	}
	if v, err := checkImage(img); err != nil || v != "v1.2" {
		t.Errorf("checkImage = %q, %v", v, err)
	}
	bad := bytes.Clone(img)
	bad[len(bad)-1] ^= 1
	if _, err := checkImage(bad); err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch") {
		t.Errorf("bad digest: %v", err)
	}
	if _, err := checkImage(img[:40]); err == nil {
		t.Errorf("torn image accepted")
	}
	if _, err := checkImage([]byte("junk")); err == nil {
		t.Errorf("junk accepted")
	}
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Errorf("crc16 check value = %#x, want 0x31c3", got)
	}
	if n, s := parseHeader([]byte("fw.img\x00100 14777 100644 0 1 100\x00\x00")); n != "fw.img" || s != 100 {
		t.Errorf("parseHeader = %q %d", n, s)
	}
}

// TestLoadySb flashes three sizes with lrzsz's sb, alternating slots, and
// checks each boots, while dha/ and data/ stay untouched.
func TestLoadySb(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sb"); err != nil {
		t.Skip("lrzsz not installed")
	}
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	if out := c.mustRun("fw_version"); out != DefaultFirmware+"\n" {
		t.Fatalf("fw_version = %q", out)
	}
	// Something in dha/ and data/ to watch.
	if err := os.WriteFile(filepath.Join(d.DHADir(), "dha_key.pem"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.DataDir(), "user.dat"), []byte("user"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := storageHashes(t, d)

	shell := c.prompt
	for i, tc := range []struct {
		name string
		size int
	}{{"small", 100}, {"1k-multiple", 4096}, {"100KB", 100 * 1000}} {
		version := fmt.Sprintf("acs-sim-2.0.%d", i)
		img := imageOfSize(version, tc.size)
		if len(img) != tc.size {
			t.Fatalf("image size %d", len(img))
		}
		c.prompt = shell
		c.sync(10 * time.Second)
		target := otherSlot(d.ActiveSlot())
		c.write("reboot_bootloader\n")
		c.romBanner(10 * time.Second)
		c.prompt = "=> "
		if !d.InBootloader() || d.RunningVersion() != "" {
			t.Errorf("%s: InBootloader=%v RunningVersion=%q", tc.name, d.InBootloader(), d.RunningVersion())
		}
		out := loadySb(t, c, d, img)
		want := fmt.Sprintf("## Total Size      = 0x%08x = %d Bytes\r\n## SHA-256        = %s\r\n## Slot %s: version %s installed, active\r\n",
			len(img), len(img), sha(img), target, version)
		if !strings.Contains(out, want) {
			t.Errorf("%s: loady report %q, want %q", tc.name, out, want)
		}
		if got, _ := os.ReadFile(d.SlotPath(target)); !bytes.Equal(got, img) {
			t.Errorf("%s: slot %s holds %d bytes, not the image", tc.name, target, len(got))
		}
		if d.ActiveSlot() != target {
			t.Errorf("%s: ActiveSlot = %s, want %s", tc.name, d.ActiveSlot(), target)
		}
		slots := c.rom("slots", 5*time.Second)
		wantLine := fmt.Sprintf("%s: version=%s size=%d sha256=%s valid=yes active\r\n", target, version, len(img), sha(img))
		if !strings.Contains(slots, wantLine) {
			t.Errorf("%s: slots = %q, want line %q", tc.name, slots, wantLine)
		}
		c.write("boot\r")
		banner, err := c.until(regexp.MustCompile(regexp.QuoteMeta(shell)), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(banner, "ACS firmware "+version+" (dut1)") || !strings.Contains(banner, "Boot:  slot "+target) {
			t.Errorf("%s: banner %q", tc.name, banner)
		}
		c.prompt = shell
		c.sync(10 * time.Second)
		if out := c.mustRun("fw_version"); out != version+"\n" {
			t.Errorf("%s: fw_version = %q", tc.name, out)
		}
		if d.RunningVersion() != version || d.RunningSlot() != target {
			t.Errorf("%s: RunningVersion %q slot %q", tc.name, d.RunningVersion(), d.RunningSlot())
		}
	}
	after := storageHashes(t, d)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("flashing changed dha/ or data/:\nbefore %v\nafter  %v", before, after)
	}
}

func TestLoadyInvalidImageKeepsPreviousSlot(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sb"); err != nil {
		t.Skip("lrzsz not installed")
	}
	d := startDevice(t, func(c *Config) { c.BootloaderStrap = true })
	c := openConsole(t, d, 115200)
	c.romBanner(10 * time.Second)
	c.prompt = "=> "
	img := BuildImage("acs-bad-9", bytes.Repeat([]byte{0xa5}, 3000))
	img[len(img)-5] ^= 0xff
	out := loadySb(t, c, d, img)
	if !strings.Contains(out, "## Image invalid: SHA-256 mismatch") || !strings.Contains(out, fmt.Sprintf("= %d Bytes", len(img))) {
		t.Errorf("loady of a bad image: %q", out)
	}
	if d.ActiveSlot() != SlotA {
		t.Errorf("ActiveSlot = %s after an invalid image", d.ActiveSlot())
	}
	if s := c.rom("slots", 5*time.Second); !strings.Contains(s, fmt.Sprintf("B: version=acs-bad-9 size=%d", len(img))) || !strings.Contains(s, "valid=no\r\n") ||
		!strings.Contains(s, "A: version="+DefaultFirmware) || !strings.Contains(s, "valid=yes active") {
		t.Errorf("slots = %q", s)
	}
	d.SetBootStrap(false)
	c.write("reset\r")
	c.prompt = d.Config().Prompt
	if _, err := c.until(regexp.MustCompile(`ACS firmware `+DefaultFirmware), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	if out := c.mustRun("fw_version"); out != DefaultFirmware+"\n" {
		t.Errorf("fw_version = %q", out)
	}
}

func TestLoadyPowerCutMidTransfer(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sb"); err != nil {
		t.Skip("lrzsz not installed")
	}
	d := startDevice(t, func(c *Config) { c.Baud = 115200 })
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	shell := c.prompt
	c.write("reboot_bootloader\n")
	c.romBanner(10 * time.Second)

	if err := os.WriteFile(filepath.Join(d.DataDir(), "user.dat"), []byte("user"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := storageHashes(t, d)
	img := imageOfSize("acs-sim-3.0.0", 60*1024) // ~5.5 s at 115200
	file := filepath.Join(t.TempDir(), "fw.img")
	if err := os.WriteFile(file, img, 0o644); err != nil {
		t.Fatal(err)
	}
	c.write("loady\r")
	if _, err := c.until(romReadyRE, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.buf = nil
	cmd, _ := sbStart(t, d, file)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := os.Stat(d.SlotPath(SlotB))
		if err == nil && st.Size() >= 16*1024 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.PowerOff(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	torn, _ := os.Stat(d.SlotPath(SlotB))
	time.Sleep(200 * time.Millisecond)
	if st, _ := os.Stat(d.SlotPath(SlotB)); st.Size() != torn.Size() || st.Size() >= int64(len(img)) {
		t.Errorf("slot B grew after the power cut or is complete: %d then %d", torn.Size(), st.Size())
	}
	if d.ActiveSlot() != SlotA || d.InBootloader() {
		t.Errorf("after the cut: ActiveSlot %s InBootloader %v", d.ActiveSlot(), d.InBootloader())
	}
	c.quiet(300 * time.Millisecond)

	if err := d.PowerOn(); err != nil {
		t.Fatal(err)
	}
	c.prompt = shell
	c.sync(10 * time.Second)
	if out := c.mustRun("fw_version"); out != DefaultFirmware+"\n" {
		t.Errorf("after the cut fw_version = %q", out)
	}
	// Flash again, successfully (small image, the line is slow).
	c.write("reboot_bootloader\n")
	c.romBanner(10 * time.Second)
	c.prompt = "=> "
	img = imageOfSize("acs-sim-3.0.1", 5000)
	if out := loadySb(t, c, d, img); !strings.Contains(out, "## Slot B: version acs-sim-3.0.1 installed, active") {
		t.Errorf("second loady: %q", out)
	}
	c.write("boot\r")
	c.prompt = shell
	c.sync(10 * time.Second)
	if out := c.mustRun("fw_version"); out != "acs-sim-3.0.1\n" {
		t.Errorf("fw_version = %q", out)
	}
	if after := storageHashes(t, d); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("cut and reflash changed dha/ or data/:\nbefore %v\nafter  %v", before, after)
	}
}

func TestBootROMCommandsAndStrap(t *testing.T) {
	t.Parallel()
	d := startDevice(t, func(c *Config) { c.BootloaderStrap = true })
	c := openConsole(t, d, 115200)
	c.romBanner(10 * time.Second)
	c.prompt = "=> "
	if !d.InBootloader() || d.Boots() != 0 || d.ShellPID() != 0 {
		t.Errorf("strap: InBootloader %v Boots %d ShellPID %d", d.InBootloader(), d.Boots(), d.ShellPID())
	}
	if out := c.rom("version", 5*time.Second); out != "HILSIM boot ROM 1.0\r\n" {
		t.Errorf("version = %q", out)
	}
	if out := c.rom("frobnicate now", 5*time.Second); out != "Unknown command 'frobnicate' - try 'help'\r\n" {
		t.Errorf("unknown = %q", out)
	}
	if out := c.rom("help", 5*time.Second); !strings.Contains(out, "loady") || !strings.Contains(out, "slots") {
		t.Errorf("help = %q", out)
	}
	// Line editing: backspace, and CR LF is one line ending.
	c.write("verx\bsion\r\n")
	if out, err := c.until(regexp.MustCompile(`=> $`), 5*time.Second); err != nil || out != "verx\b \bsion\r\nHILSIM boot ROM 1.0\r\n=> " {
		t.Errorf("edited line: %q %v", out, err)
	}
	if got := c.quiet(200 * time.Millisecond); len(got) != 0 {
		t.Errorf("CR LF gave a second prompt: %q", got)
	}
	out := c.rom("slots", 5*time.Second)
	imgA := BuildImage(DefaultFirmware, []byte(builtinPayload))
	want := fmt.Sprintf("A: version=%s size=%d sha256=%s valid=yes active\r\nB: version=- size=0 sha256=%s valid=no\r\n",
		DefaultFirmware, len(imgA), sha(imgA), sha(nil))
	if out != want {
		t.Errorf("slots = %q, want %q", out, want)
	}
	// reset with the strap set: the boot ROM again.
	c.write("reset\r")
	if _, err := c.until(regexp.MustCompile(`resetting \.\.\.\r\n`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.romBanner(10 * time.Second)
	// Reboot (the board's reset) with the strap set: the boot ROM again.
	if err := d.Reboot(); err != nil {
		t.Fatal(err)
	}
	c.romBanner(10 * time.Second)
	// Power cycle with the strap set: the boot ROM again.
	if err := d.PowerOff(); err != nil {
		t.Fatal(err)
	}
	if d.InBootloader() {
		t.Errorf("InBootloader while off")
	}
	if err := d.PowerOn(); err != nil {
		t.Fatal(err)
	}
	c.romBanner(10 * time.Second)
	// boot: the firmware, though the strap is still set.
	c.write("boot\r")
	c.prompt = d.Config().Prompt
	c.sync(10 * time.Second)
	if d.InBootloader() || d.RunningVersion() != DefaultFirmware || d.Boots() != 1 {
		t.Errorf("after boot: InBootloader %v RunningVersion %q Boots %d", d.InBootloader(), d.RunningVersion(), d.Boots())
	}
	// Strap off: reboot boots the firmware.
	d.SetBootStrap(false)
	c.write("reboot\n")
	if _, err := c.until(regexp.MustCompile(`ACS firmware `), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	// reboot_bootloader is one-shot.
	c.write("reboot_bootloader\n")
	c.romBanner(10 * time.Second)
	c.prompt = "=> "
	c.write("reset\r")
	c.prompt = d.Config().Prompt
	if _, err := c.until(regexp.MustCompile(`ACS firmware `), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
}

func TestBootFallsBackToValidSlot(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	if err := os.WriteFile(d.SlotPath(SlotB), BuildImage("acs-sim-b", []byte("b")), 0o644); err != nil {
		t.Fatal(err)
	}
	// A torn active slot: the boot takes B and makes it active.
	a, _ := os.ReadFile(d.SlotPath(SlotA))
	if err := os.WriteFile(d.SlotPath(SlotA), a[:len(a)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	c.write("reboot\n")
	if _, err := c.until(regexp.MustCompile(`boot: slot A invalid, booting slot B\r\n`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	if out := c.mustRun("fw_version"); out != "acs-sim-b\n" || d.ActiveSlot() != SlotB {
		t.Errorf("fw_version %q ActiveSlot %s", out, d.ActiveSlot())
	}
	// Neither slot valid: the board stays in the boot ROM.
	if err := os.WriteFile(d.SlotPath(SlotB), []byte("HILSIM-FW version=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.write("reboot\n")
	if _, err := c.until(regexp.MustCompile(`boot: no valid firmware in slot A or B`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.romBanner(5 * time.Second)
	c.prompt = "=> "
	if out := c.rom("boot", 5*time.Second); out != "## No valid firmware in slot A or B\r\n" {
		t.Errorf("boot without firmware = %q", out)
	}
}

func TestServePower(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	srv, err := d.ServePower()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if srv.Path() != filepath.Join(d.Dir(), "power.sock") {
		t.Errorf("socket %s", srv.Path())
	}
	conn, err := net.Dial("unix", srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, step := range []struct{ req, resp string }{{"state", "ok on"}, {"off", "ok off"}, {"on", "ok on"}} {
		fmt.Fprintln(conn, step.req)
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != step.resp {
			t.Errorf("%s -> %q %v, want %q", step.req, line, err, step.resp)
		}
	}
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
}

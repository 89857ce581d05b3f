package sim

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

//go:embed firmware/ace.sh
var aceScript string

//go:embed firmware/ctl.sh
var ctlScript string

//go:embed firmware/fw_version.sh
var fwVersionScript string

//go:embed firmware/serial_number.sh
var serialScript string

// applets are the busybox applets the device's firmware image has. Tools that
// would show the host instead of the device (ps, hostname, dmesg, mount) and
// ones that could escape the device (setsid, chroot, nsenter) are left out.
var applets = []string{
	"[", "ash", "awk", "base64", "basename", "cat", "chmod", "clear", "cmp", "cp",
	"cut", "date", "dd", "dirname", "du", "echo", "env", "expr", "false", "find",
	"grep", "head", "hexdump", "id", "kill", "ln", "ls", "md5sum", "mkdir", "mktemp",
	"mv", "od", "printf", "pwd", "readlink", "rm", "rmdir", "sed", "seq", "sh",
	"sha1sum", "sha256sum", "sha512sum", "sleep", "sort", "stat", "stty", "sync",
	"tail", "tee", "test", "touch", "tr", "true", "tty", "uname", "uniq", "uptime",
	"wc", "which", "whoami", "xargs", "xxd",
}

// layout names the host paths of one device's directory.
type layout struct {
	dir     string // Config.Dir
	bin     string // the shell's whole PATH
	etc     string // firmware configuration: device.conf
	profile string // etc/device.conf
	serial  string // etc/serial: the board's serial number
	dha     string // protected storage: survives reboot and factory reset
	data    string // the device's /data: wiped by factory reset
	home    string // HOME and working directory of the shell
	faults  string // one file per active device-side fault
	tmp     string // the device's /tmp: emptied at every boot
	run     string // runtime state of the simulator
	running string // run/fw_version: version of the firmware the last boot started
	fw      string // firmware slots A and B and the boot ROM's state file
	fwState string // fw/state: "active=A" or "active=B"
	ctl     string // FIFO the reboot/factory_reset commands write to
	tty     string // symlink to the port the harness opens
	lock    string // flock'ed while a simulator runs the device
}

func newLayout(dir string) layout {
	return layout{
		dir:     dir,
		bin:     filepath.Join(dir, "bin"),
		etc:     filepath.Join(dir, "etc"),
		profile: filepath.Join(dir, "etc", "device.conf"),
		serial:  filepath.Join(dir, "etc", "serial"),
		dha:     filepath.Join(dir, "dha"),
		data:    filepath.Join(dir, "data"),
		home:    filepath.Join(dir, "root"),
		faults:  filepath.Join(dir, "faults"),
		tmp:     filepath.Join(dir, "tmp"),
		run:     filepath.Join(dir, "run"),
		running: filepath.Join(dir, "run", "fw_version"),
		fw:      filepath.Join(dir, "fw"),
		fwState: filepath.Join(dir, "fw", "state"),
		ctl:     filepath.Join(dir, "run", "ctl"),
		tty:     filepath.Join(dir, "tty"),
		lock:    filepath.Join(dir, ".lock"),
	}
}

// lockDir takes an exclusive flock on the device directory, so two simulators
// never run the same device (they would share storage and FIFO).
func (l layout) lockDir() (*os.File, error) {
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating device directory: %w", err)
	}
	f, err := os.OpenFile(l.lock, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("device directory %s is in use by another simulator", l.dir)
		}
		return nil, fmt.Errorf("locking %s: %w", l.lock, err)
	}
	return f, nil
}

// install lays out the firmware: directories, the bin/ of the shell, the
// product profile. Storage (dha/, data/) is created if missing, never cleared.
func (l layout) install(cfg Config) error {
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{
		{l.etc, 0o755}, {l.dha, 0o700}, {l.data, 0o755}, {l.home, 0o700},
		{l.faults, 0o755}, {l.tmp, 0o1777}, {l.run, 0o755},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("creating %s: %w", d.path, err)
		}
	}
	if err := l.installFirmware(cfg.Firmware); err != nil {
		return err
	}
	// Faults belong to a test run, not to the device: a restarted simulator
	// starts healthy.
	if err := emptyDir(l.faults); err != nil {
		return err
	}
	profile, err := os.ReadFile(cfg.Profile)
	if err != nil {
		return fmt.Errorf("reading product profile: %w", err)
	}
	if err := writeFileAtomic(l.profile, profile, 0o644); err != nil {
		return err
	}
	if err := l.writeSerial(cfg.Serial); err != nil {
		return err
	}
	// bin/ is firmware, rebuilt at every start so it matches this version of
	// the simulator.
	if err := os.RemoveAll(l.bin); err != nil {
		return fmt.Errorf("removing old bin: %w", err)
	}
	if err := os.Mkdir(l.bin, 0o755); err != nil {
		return fmt.Errorf("creating bin: %w", err)
	}
	for _, a := range applets {
		if err := os.Symlink(cfg.Busybox, filepath.Join(l.bin, a)); err != nil {
			return fmt.Errorf("installing applet %s: %w", a, err)
		}
	}
	scripts := map[string]string{
		"ace": scriptHeader(cfg.Busybox, map[string]string{
			"BB": cfg.Busybox, "OPENSSL": cfg.OpenSSL, "DHA": l.dha,
			"FAULTS": l.faults, "PROFILE": l.profile, "TMPD": l.tmp,
		}) + aceScript,
		"reboot": scriptHeader(cfg.Busybox, map[string]string{
			"BB": cfg.Busybox, "CTL": l.ctl, "ACTION": "reboot",
		}) + ctlScript,
		"factory_reset": scriptHeader(cfg.Busybox, map[string]string{
			"BB": cfg.Busybox, "CTL": l.ctl, "ACTION": "factory_reset",
		}) + ctlScript,
		"reboot_bootloader": scriptHeader(cfg.Busybox, map[string]string{
			"BB": cfg.Busybox, "CTL": l.ctl, "ACTION": "reboot_bootloader",
		}) + ctlScript,
		"fw_version": scriptHeader(cfg.Busybox, map[string]string{
			"BB": cfg.Busybox, "RUNNING": l.running,
		}) + fwVersionScript,
		"serial_number": scriptHeader(cfg.Busybox, map[string]string{
			"BB": cfg.Busybox, "SERIAL": l.serial,
		}) + serialScript,
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(l.bin, name), []byte(body), 0o755); err != nil {
			return fmt.Errorf("installing %s: %w", name, err)
		}
	}
	return nil
}

// scriptHeader makes the #! line and variable block of a firmware script.
func scriptHeader(busybox string, vars map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!%s sh\n# Generated by the hilbench ACS simulator.\n", busybox)
	for _, k := range []string{"BB", "OPENSSL", "DHA", "FAULTS", "PROFILE", "TMPD", "CTL", "ACTION", "RUNNING", "SERIAL"} {
		if v, ok := vars[k]; ok {
			fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(v))
		}
	}
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// prepareBoot does what the board's early boot does to storage: /tmp is a
// tmpfs (empty), and half-written temp files of an interrupted commit are
// dropped (the rename never happened, so the old content stands).
func (l layout) prepareBoot() error {
	if err := emptyDir(l.tmp); err != nil {
		return err
	}
	stale, err := filepath.Glob(filepath.Join(l.dha, ".*.tmp"))
	if err != nil {
		return fmt.Errorf("listing stale temp files: %w", err)
	}
	// An interrupted write of the boot ROM's state file: the old one stands.
	stale = append(stale, filepath.Join(l.fw, ".state.tmp"))
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale temp file: %w", err)
		}
	}
	return nil
}

// emptyDir removes everything inside dir but keeps dir itself.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("emptying %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("emptying %s: %w", dir, err)
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// linkAtomic points link at target, replacing whatever link was.
func linkAtomic(target, link string) error {
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("linking %s: %w", link, err)
	}
	return nil
}

package acs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/flash"
)

// Steps of a serial flash, as reports name them.
const (
	StepEnterBootloader = "enter_bootloader"
	StepTransfer        = "ymodem"
	StepDigest          = "digest_check"
	StepBoot            = "boot"
	StepVersion         = "version"
)

// ErrImageRejected is returned when the bootloader received the image whole but refused it
// (its own integrity check failed); the previous firmware stays active.
var ErrImageRejected = errors.New("the bootloader rejected the image")

// Defaults of FlashConfig.
const (
	DefaultEnterCommand   = "reboot_bootloader"
	DefaultLoadCommand    = "loady"
	DefaultBootCommand    = "boot"
	DefaultVersionCommand = "fw_version"
	DefaultFlashTimeout   = 30 * time.Second
	DefaultFlashAttempts  = 3
)

var (
	defaultBootloaderPrompt = regexp.MustCompile(`=> $`)
	// U-Boot's loady and the simulator announce the transfer with this line.
	readyLine = regexp.MustCompile(`Ready for binary[^\n]*\n`)
	// The bootloader reports what it received; this is what the digest check reads.
	defaultDigestLine = regexp.MustCompile(`SHA-256\s*=\s*([0-9a-fA-F]{64})`)
	// After a complete transfer the bootloader either installs the image or refuses it.
	verdictLine = regexp.MustCompile(`(installed[^\n]*|Image invalid:[^\n]*)\n`)
)

// FlashConfig says how to reach this device's bootloader and what to type there.
type FlashConfig struct {
	// EnterCommand is the shell command that restarts into the bootloader; ignored when Strap is set.
	EnterCommand string
	// Strap, when set, enters the bootloader by setting the boot strap and cycling power, and
	// releases the strap before booting the new image.
	Strap                                    func(ctx context.Context, on bool) error
	PowerCycle                               func(ctx context.Context) error // required with Strap
	Prompt                                   *regexp.Regexp                  // the bootloader's prompt
	DigestLine                               *regexp.Regexp                  // group 1: the SHA-256 the bootloader reports
	LoadCommand, BootCommand, VersionCommand string
	// Timeout bounds reaching the bootloader, each transfer's start, and the boot after it.
	Timeout time.Duration
	// BlockTimeout is how long the YMODEM sender waits for a block's answer before sending it
	// again (default flash.DefaultBlockTimeout); GarbageWait, how long once garbage came
	// instead of the answer (default flash.DefaultGarbageWait).
	BlockTimeout, GarbageWait time.Duration
	Attempts                  int // transfers tried before giving up
}

func (c FlashConfig) withDefaults() FlashConfig {
	if c.EnterCommand == "" {
		c.EnterCommand = DefaultEnterCommand
	}
	if c.Prompt == nil {
		c.Prompt = defaultBootloaderPrompt
	}
	if c.DigestLine == nil {
		c.DigestLine = defaultDigestLine
	}
	if c.LoadCommand == "" {
		c.LoadCommand = DefaultLoadCommand
	}
	if c.BootCommand == "" {
		c.BootCommand = DefaultBootCommand
	}
	if c.VersionCommand == "" {
		c.VersionCommand = DefaultVersionCommand
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultFlashTimeout
	}
	if c.Attempts <= 0 {
		c.Attempts = DefaultFlashAttempts
	}
	return c
}

// FlashResult is a verified flash.
type FlashResult struct {
	Version   string      // what the booted firmware reports
	Digest    string      // SHA-256 the bootloader reported for what it received (= the image's)
	Attempts  int         // transfers it took
	Transfer  flash.Stats // the successful transfer
	Duration  time.Duration
	Installed string // the bootloader's verdict line
}

// FlashWith writes img through the device's bootloader as cfg says: enter it, send the image with
// YMODEM (retrying a failed transfer), check the digest the bootloader reports against the image's,
// boot, and read the running version. Any failure is an error: a flash is only reported done when
// all of it held. Session.Flash is this with the bench's flash settings.
func (d *Device) FlashWith(ctx context.Context, img *flash.Image, cfg FlashConfig, opts device.FlashOptions) (*FlashResult, error) {
	cfg = cfg.withDefaults()
	start := time.Now()
	step := func(s string) {
		if opts.Progress != nil {
			opts.Progress(d.cfg.Name, s)
		}
	}
	note := func(format string, a ...any) {
		if opts.Note != nil {
			opts.Note(format, a...)
		}
	}
	want := hex.EncodeToString(img.SHA256[:])
	booted := false

	step(StepEnterBootloader)
	defer func() {
		// Not at the shell until a boot brought its prompt back (below).
		if !booted {
			d.ready.Store(false)
		}
	}()
	if err := d.enterBootloader(ctx, cfg); err != nil {
		return nil, d.fail(StepEnterBootloader, err)
	}

	res := &FlashResult{}
	var lastErr error
	for attempt := 1; attempt <= cfg.Attempts; attempt++ {
		res.Attempts = attempt
		step(StepTransfer)
		st, digest, verdict, err := d.transfer(ctx, img, cfg, opts)
		if err == nil {
			res.Transfer, res.Digest, res.Installed = st, digest, verdict
			lastErr = nil
			break
		}
		if errors.Is(err, ErrImageRejected) || ctx.Err() != nil {
			return nil, d.fail(StepTransfer, err)
		}
		var de *digestError
		if errors.As(err, &de) {
			return nil, d.fail(StepDigest, err)
		}
		lastErr = err
		note("%s: transfer %d of %d failed: %v", d.cfg.Name, attempt, cfg.Attempts, err)
		if rerr := d.backToBootloader(ctx, cfg); rerr != nil {
			return nil, d.fail(StepTransfer, fmt.Errorf("%w; then the bootloader did not come back: %v", err, rerr))
		}
	}
	if lastErr != nil {
		return nil, d.fail(StepTransfer, fmt.Errorf("%d transfers failed, the last: %w", cfg.Attempts, lastErr))
	}
	if res.Digest != want {
		return nil, d.fail(StepDigest, &digestError{got: res.Digest, want: want})
	}

	step(StepBoot)
	if cfg.Strap != nil {
		if err := cfg.Strap(ctx, false); err != nil {
			return nil, d.fail(StepBoot, fmt.Errorf("releasing the boot strap: %w", err))
		}
	}
	bctx, cancel := context.WithTimeout(ctx, max(cfg.Timeout, d.cfg.BootTimeout))
	defer cancel()
	if err := d.con.Send(bctx, cfg.BootCommand+"\n"); err != nil {
		return nil, d.fail(StepBoot, err)
	}
	if err := d.con.Sync(bctx); err != nil {
		return nil, d.fail(StepBoot, fmt.Errorf("no shell prompt after %q: %w", cfg.BootCommand, err))
	}
	booted = true

	step(StepVersion)
	out, err := d.shell(ctx, StepVersion, cfg.VersionCommand)
	if err != nil {
		return nil, err
	}
	res.Version = strings.TrimSpace(out)
	if opts.ExpectVersion != "" && res.Version != opts.ExpectVersion {
		return nil, d.fail(StepVersion, fmt.Errorf("the device runs %q after flashing, want %q (did it fall back to its previous slot?)", res.Version, opts.ExpectVersion))
	}
	res.Duration = time.Since(start)
	return res, nil
}

type digestError struct{ got, want string }

func (e *digestError) Error() string {
	return fmt.Sprintf("the bootloader reports SHA-256 %s for what it received; the image's is %s", e.got, e.want)
}

// enterBootloader gets the device to its bootloader prompt.
func (d *Device) enterBootloader(ctx context.Context, cfg FlashConfig) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.Strap != nil {
		if cfg.PowerCycle == nil {
			return errors.New("entering the bootloader by strap needs power control (a power section in the bench)")
		}
		if err := cfg.Strap(ctx, true); err != nil {
			return fmt.Errorf("setting the boot strap: %w", err)
		}
		if err := cfg.PowerCycle(ctx); err != nil {
			return fmt.Errorf("power cycle: %w", err)
		}
		return d.waitBootloader(ctx, cfg, "after a power cycle with the boot strap set")
	}
	// Already there (an earlier flash failed half-way)? Then no shell command is needed.
	if d.atBootloader(ctx, cfg) {
		return nil
	}
	if err := d.Sync(ctx); err != nil {
		return err
	}
	if err := d.con.Send(ctx, cfg.EnterCommand+"\n"); err != nil {
		return err
	}
	return d.waitBootloader(ctx, cfg, fmt.Sprintf("after %q", cfg.EnterCommand))
}

// atBootloader pokes the line and reports whether the bootloader's prompt answers.
func (d *Device) atBootloader(ctx context.Context, cfg FlashConfig) bool {
	either := regexp.MustCompile(`(?:` + cfg.Prompt.String() + `)|(?:` + d.cfg.Prompt.String() + `)`)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := d.con.Send(pctx, "\n"); err != nil {
		return false
	}
	got, err := d.con.Expect(pctx, either)
	return err == nil && cfg.Prompt.MatchString(got)
}

func (d *Device) waitBootloader(ctx context.Context, cfg FlashConfig, when string) error {
	if _, err := d.con.Expect(ctx, cfg.Prompt); err != nil {
		return fmt.Errorf("the device never showed its bootloader prompt %q %s: %w", cfg.Prompt, when, err)
	}
	return nil
}

// backToBootloader stops a receiver that may still wait for blocks and waits for the prompt.
func (d *Device) backToBootloader(ctx context.Context, cfg FlashConfig) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// Five CANs end a YMODEM receive on every receiver we know of; a bootloader at its prompt
	// reads them as a (rejected) command line.
	if err := d.con.Raw(ctx, "cancel transfer", func(rw io.ReadWriter) error {
		_, err := rw.Write([]byte{0x18, 0x18, 0x18, 0x18, 0x18, 0x08, 0x08, 0x08, 0x08, 0x08})
		return err
	}); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	if err := d.con.Send(ctx, "\n"); err != nil {
		return err
	}
	return d.waitBootloader(ctx, cfg, "after cancelling the transfer")
}

// transfer runs one load command: YMODEM, then the bootloader's digest and verdict.
func (d *Device) transfer(ctx context.Context, img *flash.Image, cfg FlashConfig, opts device.FlashOptions) (flash.Stats, string, string, error) {
	var st flash.Stats
	tctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := d.con.Send(tctx, cfg.LoadCommand+"\n"); err != nil {
		return st, "", "", err
	}
	// The bootloader's prompt after the echo of the command instead of its ready line: it refused
	// the command, and says why at once; waiting out the timeout would tell nothing more. (A
	// prompt before the echo is an earlier one; a bootloader that does not echo gets the timeout.)
	readyOrPrompt := regexp.MustCompile(`(?:` + readyLine.String() + `)|(?:` + regexp.QuoteMeta(cfg.LoadCommand) +
		`\n[\s\S]*?(?:` + cfg.Prompt.String() + `))`)
	got, err := d.con.Expect(tctx, readyOrPrompt)
	if err != nil {
		return st, "", "", fmt.Errorf("the bootloader did not start receiving after %q: %w", cfg.LoadCommand, err)
	}
	if !readyLine.MatchString(got) {
		return st, "", "", fmt.Errorf("the bootloader did not start receiving after %q; it answered %q", cfg.LoadCommand, lastLines(got, 3))
	}
	name := filepath.Base(img.Path)
	var serr error
	err = d.con.Raw(ctx, "ymodem "+name, func(rw io.ReadWriter) error {
		st, serr = flash.SendYModem(ctx, rw, name, img.Data, flash.YModemOptions{Progress: opts.Transfer,
			BlockTimeout: cfg.BlockTimeout, GarbageWait: cfg.GarbageWait})
		return serr
	})
	if err != nil {
		return st, "", "", err
	}
	vctx, cancel2 := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel2()
	out, err := d.con.Expect(vctx, cfg.DigestLine)
	if err != nil {
		return st, "", "", fmt.Errorf("the bootloader reported no digest after the transfer: %w", err)
	}
	m := cfg.DigestLine.FindAllStringSubmatch(out, -1)
	digest := strings.ToLower(m[len(m)-1][1])
	verdict, err := d.con.Expect(vctx, verdictLine)
	if err != nil {
		return st, digest, "", fmt.Errorf("the bootloader said neither installed nor invalid after the transfer: %w", err)
	}
	verdict = strings.TrimSpace(verdictLine.FindStringSubmatch(verdict)[1])
	if _, err := d.con.Expect(vctx, cfg.Prompt); err != nil {
		return st, digest, verdict, fmt.Errorf("no bootloader prompt after the transfer: %w", err)
	}
	if strings.HasPrefix(verdict, "Image invalid") {
		return st, digest, verdict, fmt.Errorf("%w: %s", ErrImageRejected, verdict)
	}
	return st, digest, verdict, nil
}

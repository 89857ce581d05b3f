package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"hilbench/harness/bench"
	"hilbench/harness/internal/lockfile"
	"hilbench/harness/link"
	"hilbench/harness/power"
)

// LockPorts takes a station lock on every target's port for the whole run: a slot's port is
// opened and closed many times (probes, one DUT after another), and a second station must not
// slip in between. The lock files sit beside the port locks of harness/link
// (hil-station<path>.lock). A port another station holds fails, naming the holder.
func LockPorts(ts []*bench.Target) (io.Closer, error) {
	var held locks
	for _, t := range ts {
		real, err := filepath.EvalSymlinks(t.Console.Port)
		if err != nil {
			real = t.Console.Port
		}
		real, _ = filepath.Abs(real)
		l, err := lockfile.Acquire(filepath.Join(lockDir(), "hil-station"+strings.ReplaceAll(real, "/", "_")+".lock"))
		if err != nil {
			held.Close()
			var he *lockfile.HeldError
			if errors.As(err, &he) {
				return nil, fmt.Errorf("slot %s: port %s is in use by another station: %s (%w)", t.Name, real, he.Holder, link.ErrInUse)
			}
			return nil, fmt.Errorf("slot %s: locking port %s: %w", t.Name, real, err)
		}
		held = append(held, l)
	}
	return held, nil
}

type locks []*lockfile.Lock

func (ls locks) Close() error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Release())
	}
	return errors.Join(errs...)
}

// lockDir is harness/link's: its LockDir, else /var/lock, /run/lock, the temporary directory.
func lockDir() string {
	if link.LockDir != "" {
		return link.LockDir
	}
	for _, d := range []string{"/var/lock", "/run/lock"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && unix.Access(d, unix.W_OK) == nil {
			return d
		}
	}
	return os.TempDir()
}

// powerOff switches a target's power off (release: power_off).
func powerOff(ctx context.Context, t *bench.Target) error {
	if t.Power == nil {
		return errors.New("the bench gives the target no power section")
	}
	pw, err := power.ForTarget(t)
	if err != nil {
		return err
	}
	defer power.Close(pw)
	return pw.Off(ctx)
}

package sim

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockSlot takes an exclusive, machine-wide lock on the vpcd slot at addr, so that test
// binaries running at once (go test ./... runs packages in parallel) never plug two cards into
// one slot. It waits until the slot is free or ctx ends; release gives it back. The lock is an
// flock on a file in the temporary directory, released by the kernel if the process dies.
func LockSlot(ctx context.Context, addr string) (release func(), err error) {
	if addr == "" {
		addr = DefaultAddr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("vpcd address %q: %w", addr, err)
	}
	path := filepath.Join(os.TempDir(), "hilbench-vpcd-"+port+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("locking vpcd slot %s: %w", addr, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("locking vpcd slot %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for vpcd slot %s (another test binary holds %s): %w", addr, path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

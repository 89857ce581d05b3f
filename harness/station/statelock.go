package station

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"hilbench/harness/internal/lockfile"
)

// ErrStateOwned: another process (or another pipeline of this one) owns the signer state
// directory.
var ErrStateOwned = errors.New("the signer state is owned by another process")

// StateLockFile is the lock file in the signer state directory: flock'd by the process that owns
// the DAK's state (its audit log, budget, agent socket), and holding its pid and command line.
const StateLockFile = "owner.lock"

// LockState makes this process the one owner of the signer state directory dir until the
// returned Closer is closed (or the process ends: the flock dies with it, so a crash leaves no
// lock behind). A second owner, in this process or another, is refused naming the first:
// two `hil signer serve` with different sockets, or two stations signing directly with one
// DAK, would otherwise both sign from one budget and audit log.
func LockState(dir string) (io.Closer, error) {
	l, err := lockfile.Acquire(filepath.Join(dir, StateLockFile))
	if err != nil {
		var held *lockfile.HeldError
		if errors.As(err, &held) {
			who := held.Holder.String()
			if held.Holder.PID == 0 {
				who = "another process"
			}
			return nil, fmt.Errorf("signer state %s is owned by %s: %w (one process owns a DAK's state: "+
				"sign through its agent, `hil signer serve`, or wait for it to end)", dir, who, ErrStateOwned)
		}
		return nil, fmt.Errorf("locking the signer state %s: %w", dir, err)
	}
	return stateLock{l}, nil
}

type stateLock struct{ l *lockfile.Lock }

func (s stateLock) Close() error { return s.l.Release() }

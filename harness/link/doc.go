// Package link opens serial ports for the harness with go.bug.st/serial and
// finds them by USB identity.
//
// # Concepts
//
//   - Config: where the port is (a device path, a stable symlink such as
//     /dev/serial/by-id/..., or a USB VID/PID/serial) and how to talk to it
//     (baud, data bits, parity, stop bits). Validate reports the first bad
//     field by name (*ConfigError).
//   - Port: an io.ReadWriteCloser over one serial port. Reads poll the driver
//     with a short read timeout (go.bug.st/serial returns (0, nil) when it
//     expires) so that a context or a vanished device are noticed within one
//     tick; Close wakes a pending Read at once. Port.Read itself never
//     returns (0, nil).
//   - Reopen: a USB-serial adapter on the device re-enumerates across a
//     device reboot, so its node vanishes and comes back, maybe under another
//     name. With Config.Reopen > 0, Read and Write wait that long for the port
//     to come back (found again by path or USB identity) instead of failing
//     with ErrDisconnected.
//   - Lock: Open locks the port before opening it, keyed by the node its path
//     resolves to (filepath.EvalSymlinks): flock(2) on a lock file in LockDir,
//     which holds for root and dies with a crashed process, then the UUCP lock
//     file LCK..<name> (pid as "%10d\n") that minicom and picocom honour; a
//     live holder's LCK file blocks, a dead one's is replaced. A second opener
//     fails at once with ErrInUse naming the holder's pid and command line.
//     Close releases the lock and never hangs on the driver. A port whose
//     node vanished (the device left the bus) releases it too while it waits
//     for the device: the node's number may go to another device, whose user
//     must not be refused; the reopen locks whatever node it finds.
//   - Find and Enumerate: USB lookup through go.bug.st/serial/enumerator.
//     Enumerate is a variable so tests (and machines without a USB bus) can
//     supply their own list. Find refuses ambiguity and, when nothing matches,
//     lists what it saw.
//
// Errors carry the sentinels ErrNotFound, ErrAmbiguous, ErrBusy, ErrInUse,
// ErrDisconnected and net.ErrClosed (after Close) for errors.Is.
package link

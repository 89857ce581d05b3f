package agent

import (
	"net"

	"golang.org/x/sys/unix"

	"hilbench/harness/signer/audit"
)

// peerOf returns the connected process's pid and uid (SO_PEERCRED), or nil.
func peerOf(c *net.UnixConn) *audit.Peer {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil || cred == nil {
		return nil
	}
	return &audit.Peer{PID: int(cred.Pid), UID: int(cred.Uid)}
}

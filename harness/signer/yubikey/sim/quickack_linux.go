package sim

import (
	"net"
	"syscall"
)

// quickAck asks Linux to acknowledge received data at once instead of
// delaying the ACK (TCP_QUICKACK, tcp(7)); the mode does not stick, so it is
// set again after every read.
//
// Why: vpcd (vsmartcard 0.8, the Debian package) writes the 2-byte length
// and the payload of each message with two send calls on a socket without
// TCP_NODELAY. Nagle's algorithm holds the payload until the length is
// acknowledged, and a delayed ACK on this side takes ~40 ms: every APDU
// would cost ~40 ms more than it does on a USB YubiKey.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

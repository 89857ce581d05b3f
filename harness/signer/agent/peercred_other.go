//go:build !linux

package agent

import (
	"net"

	"hilbench/harness/signer/audit"
)

// peerOf is not implemented here: SO_PEERCRED is Linux's. Records then
// carry no client.
func peerOf(*net.UnixConn) *audit.Peer { return nil }

// Package ack drives Alexa Connect Kit modules: provisioning them with a device identity signed
// by the DAK, in one of two modes.
//
// Native mode speaks hilbench's HA1 dialect (PROTOCOL.md) over the module's debug UART:
//
//   - frame.go: one frame a line, CRC-32, sequence numbers; damage (resend) is told apart from
//     another dialect (stop, naming both).
//   - Transport (exchange.go): stop-and-wait, one request in flight, the identical frame resent on
//     NAK, damaged answer or timeout, at most MaxSends times; a BOOT event ends the exchange with
//     ErrModuleRestarted so the caller re-reads the state. An ERR code=busy is asked again as a
//     new request after a growing pause (BusyTries). DATA and READ chunks shrink on a line too noisy
//     for them and grow back on a clean one (chunk.go). Every byte goes to the transcript; Stats
//     counts sends, retransmissions, NAKs, damaged frames, timeouts, busy answers and bytes.
//   - Module (device.go, provision.go): HELLO, KEYGEN, CSR, issue, upload (BEGIN, DATA, COMMIT),
//     read back and verify, by harness/device's exactly-once rules: a provisioned module holding
//     the chain the ledger records for its key is verified and reported Already, any other chain
//     is refused unless Reprovision; a keyed module keeps its key and gets the chain the ledger
//     recorded for it (no new signature). After a restart (or, with Config.PowerCycle, a silence)
//     Provision goes on from the state HELLO reports, at most MaxRecoveries times.
//
// Session (native) and ExternalSession (external mode) are the family's device.Device: Open and
// OpenExternal open a bench target's port, transcript and power control. External mode
// (external.go) runs the vendor's tool from an argv template and trusts it only when it exits 0,
// prints a line matching a success pattern and none matching a failure pattern; the port is
// closed while it runs and reopened for the native read-back and verification. The tool signs,
// not the station: nothing goes through the Issuer or the ledger.
//
// Errors name the target and step (*device.StepError). Nothing is issued after a protocol
// failure, and the PIN file's content is never written anywhere (only its path goes to the tool).
package ack

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
//     read back and verify. One signature per Module: a chain issued in this run (or the station's
//     record of an earlier one, Options.Previous) is uploaded again when its leaf holds the
//     module's key. After a restart (or, with Options.PowerCycle, a silence) Provision goes on from
//     the state HELLO reports, at most MaxRecoveries times.
//
// External mode (external.go) runs the vendor's tool from an argv template and trusts it only
// when it exits 0, prints a line matching a success pattern and none matching a failure pattern.
// The caller closes the serial port before the tool runs and reopens it for Module.Verify.
//
// Errors name the target and step (*StepError). Nothing is issued after a protocol failure, and
// the PIN file's content is never written anywhere (only its path goes to the tool).
package ack

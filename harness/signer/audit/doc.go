// Package audit keeps the append-only record of every certificate a DAK
// issued: which device (CSR) asked, through which client, what was issued,
// and the chain itself.
//
// # Concepts
//
//   - Log file: JSON Lines, one Record per line, opened O_APPEND with mode
//     0600. Append writes the whole line with one write(2) under an
//     exclusive flock(2) and fsyncs it before it returns, so a record that
//     Append confirmed survives a power cut. Nothing is ever rewritten.
//   - Record: time, target (as the client named it), client (pid/uid of the
//     socket peer when known), CSR SHA-256 (of the CSR's DER, so PEM line
//     endings do not matter), certificate serial (hex, as `openssl x509
//     -serial` prints it), certificate SHA-256, subject, DAK certificate
//     SHA-256 and the chain PEM, so that a retried request can be answered
//     with the identical chain, even after a restart.
//   - Once: a record of a certificate the log holds already (the latest
//     record of the same CSR, with the same certificate SHA-256) is not
//     written again, so a caller that cannot tell whether an earlier append
//     got through (the issuance pipeline after a crash) may append again.
//   - Index: Open reads the file and indexes records by CSR SHA-256 (file
//     offsets only, not the records); Find reads the record back from the
//     file. Records appended later by this Log are indexed too; records
//     other processes append after Open are not. CountDAK counts records
//     per DAK, a lower bound that catches a reset signature counter.
//   - Damage: a line that is not a record (a power cut mid-write leaves a
//     truncated last line) does not stop Open: it is skipped and reported in
//     Warnings. A truncated last line is first terminated with a newline so
//     that the next record starts on a line of its own; the fragment stays
//     in the file for whoever investigates.
//
// The log holds certificates and hashes only: no key material, no PIN.
package audit

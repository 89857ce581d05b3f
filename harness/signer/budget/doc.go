// Package budget counts the signatures a Device Attestation Key (DAK) has
// made, against the maximum its device profile allows (the Sidewalk bulk provisioning guide: "the
// maximum number of signatures that the DAK can sign").
//
// # Concepts
//
//   - Counter file: one per DAK. Its first line is JSON naming the DAK
//     (certificate SHA-256 and subject); then one line per signature,
//     "<count> <time>", counting 1, 2, 3... Open refuses a file that belongs
//     to another DAK (*DAKMismatchError, matching ErrOtherDAK) and a file
//     whose counts do not follow (ErrCorrupt): a counter is never silently
//     reset. Keep it with the audit log; never delete it to "reset" a DAK.
//   - Reserve before signing: Reserve appends the next count and fsyncs the
//     file before it returns, and only then may the caller sign. A crash or
//     power cut between the two can waste one signature of the budget but can
//     never let the DAK sign more than the maximum: the counter over-counts,
//     never under-counts. A signature that fails after its reservation stays
//     counted for the same reason. A last line cut short by a power cut
//     belongs to a Reserve that never returned (no signature was made), so it
//     is dropped.
//   - Exhausted: once used == max, Reserve returns *ExhaustedError (matching
//     ErrExhausted) and writes nothing. From 90% on, each Reservation carries
//     Warning and a message to show the operator.
//   - Unlimited: max <= 0 means no limit, but every signature is still
//     counted.
//   - Concurrency: a Budget is safe for concurrent use; several processes may
//     share a counter file: every read-modify-write holds an exclusive
//     flock(2) on it.
package budget

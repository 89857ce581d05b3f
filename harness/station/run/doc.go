// Package run is the end-of-line station's runner: every target of a bench is a slot, and all
// slots run a test plan (harness/plan) at once and continuously: wait for a DUT to appear (its
// console answers), run the plan, show PASS or FAIL, release the slot, wait for the DUT to be
// removed, then the next one.
//
// # Concepts
//
//   - Slot: one bench target. One slot's failure never stops another; an operator may stop and
//     start a slot (web page) between DUTs.
//   - Test: one DUT's pass through the plan. Recorded in the ledger (BeginTest before the first
//     phase, EndTest at the end) and as a JSON record with the transcript beside it
//     (<out>/records/<id>/); the batch's records also go to JUnit XML (<out>/runs/<run>/junit.xml).
//   - Drain and abort: Drain lets the DUTs in flight finish and starts no new one; Abort stops
//     them at once, recorded ABORTED.
//   - Recovery: Recover ends the tests a dead station left RUNNING in the ledger as ABORTED.
//     Signing is exactly once per device key (harness/issue), so a DUT tested again after a crash
//     gets the chain it was issued, never a second signature.
//   - Port locks: a station holds a lock per slot port for its whole run, so a second station on
//     the same ports is refused at start, naming the holder.
package run

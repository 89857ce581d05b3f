// Package soak is the nightly regression rig's loop: every target of a bench, in parallel,
// provisioned once and then taken through N cycles of verify, reboot, factory reset, reflash,
// power cycle and power cut, with the identity checked against the ledger after every step, and
// a morning report of what flaked, where and how often.
//
// # Concepts
//
//   - Step: one operation on one target in one cycle. An ordinary failure (a timeout, a line
//     error) is retried, at most Config.Retries times, after a recovery (power on, reopen); the
//     retries are counted and a step that passed on a retry is a flake.
//   - Identity check: after every step the chain the device holds is read until two reads agree
//     and compared with the chain the ledger issued for it (device.Verify). A torn chain (none, or
//     unreadable on every read), a changed chain, a second signature for the device key, or a
//     ledger inconsistency (ledger Check) is a failure of its own kind: counted, never retried.
//     A torn or changed chain ends the target's soak (its identity is gone).
//   - Faults: on simulated targets (power type "sim") the soak asks the simulator, over its power
//     socket, for line noise at a byte error rate, for power cuts armed at a byte of the
//     certificate upload or write (during provisioning) or of the firmware transfer (reflash), and
//     for USB-serial re-enumeration (the port moves to a new device node behind the name the bench
//     gives it); it also cuts the power at a random moment of a reboot. Every choice comes from
//     the seed and the target's name, so a run is reproducible.
//   - Hardware: verify, reboot and power cycle only, unless Destructive (factory reset, reflash,
//     power cut by switching the power off at a random moment of a reboot).
//   - Report: per step and per target the runs, failures, retries, flakes, p50/p99 times and the
//     first failure's transcript excerpt; the identity counters; soak.json, JUnit XML and an HTML
//     page with inline SVG plots.
package soak

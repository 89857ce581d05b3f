// Package acs drives Amazon Common Software (ACS) devices: Linux boards whose serial console runs a
// shell and whose firmware provisions its Device Hardware Authentication (DHA) identity with the
// `ace hal dha` commands of seed 002.
//
// # Concepts
//
//   - Device: one board behind a console (harness/console). Every step is a shell command whose
//     exit status is checked; every wait has a deadline.
//   - The cycle (Provision): refuse an already provisioned device unless asked, key_gen, read the CSR
//     (get_field 0x201), check and issue (pki), write the chain into DataDir with printf commands
//     busybox ash accepts and check its SHA-256 on the device, set_cert, read back (get_field 0x202),
//     compare byte for byte with what was issued and verify the path to the roots.
//   - One issue per device per run: a Device remembers the chain it was issued, so a retry after a
//     failed upload or set_cert reuses it instead of signing again.
//   - Commands: every device-side command line lives in Commands, overridable from the bench file,
//     since firmware builds differ.
//   - Persistence: Reboot and FactoryReset wait for proof the device went down (RebootMarker) and
//     then for its prompt; Verify afterwards must give the identical chain (seed 001).
package acs

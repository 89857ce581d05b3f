// Package acs drives Amazon Common Software (ACS) devices: Linux boards whose serial console runs a
// shell and whose firmware provisions its Device Hardware Authentication (DHA) identity with the
// `ace hal dha` commands of the FFS provisioning guide.
//
// # Concepts
//
//   - Device: one board behind a console (harness/console). Every step is a shell command whose
//     exit status is checked; every wait has a deadline. Session (Open) is a Device with its port,
//     transcript and the bench's flash and power settings: the family's device.Device.
//   - The cycle (Provision), by harness/device's exactly-once rules: read the chain the device
//     holds (get_field 0x202): the one the ledger records for its key is verified and reported
//     Already, any other is refused unless Reprovision. Then ask for the CSR of the key the device
//     has (get_field 0x201) before any key_gen: a key an interrupted run made is kept and the
//     Issuer hands back its recorded chain. key_gen only for a device without a key (or the key of
//     an identity being replaced); issue; write the chain into DataDir with printf commands busybox
//     ash accepts and check its SHA-256 on the device; set_cert (the ledger: stored); read back and
//     device.Verify (the ledger: verified).
//   - One issue per Device: it remembers the chain it was issued, so a retry after a failed upload
//     or set_cert reuses it instead of asking again.
//   - Commands: every device-side command line lives in Commands, overridable from the bench file,
//     since firmware builds differ.
//   - Persistence: Reboot and FactoryReset wait for proof the device went down (RebootMarker) and
//     then for its prompt; Verify afterwards must give the identical chain (the FFS manufacturing guide).
//   - Flashing (flash.go): FlashWith enters the bootloader and sends an image by YMODEM;
//     Session.Flash (device.Flasher) is that with the bench's flash section, mapped at Open.
package acs

// Package sim is a virtual YubiKey: a PIV applet emulator (YubiKey 5,
// firmware 5.4.3) that plugs into the real pcscd through vsmartcard's vpcd
// reader driver, so that piv-go, libpcsclite, pcscd and Debian's
// yubico-piv-tool run unchanged against it. CI and development machines have
// no YubiKey; the harness's YubiKey signer is tested against this instead.
//
// It shares no code with the driver it tests: it imports neither piv-go nor
// any hilbench package, and implements the card side from NIST SP 800-73-4
// (PIV), NIST SP 800-78-4 (algorithms) and Yubico's PIV documentation.
//
// # Concepts
//
//   - Card: the applet state machine, independent of any transport. Card.APDU
//     takes a command APDU and returns the response APDU; PowerOn, PowerOff
//     and WarmReset clear the volatile (session) state. A Card is safe for
//     concurrent use: commands run one at a time, as on a card.
//   - Persistent and volatile state. Persistent: serial number, form factor,
//     PIN, PUK and their retry counters, management key, keys with their PIN
//     and touch policies, data objects (certificates, CHUID, CCC, ...), the
//     factory attestation key. Volatile: selected application, PIN verified,
//     management key authenticated, chained command and pending response.
//     Power off, power on, reset and unplugging clear the volatile state.
//   - State file: Open(path) keeps the persistent state in a JSON file (mode
//     0600; it holds PIN, PUK and private keys in the clear, like the card's
//     flash), rewritten atomically (temporary file, fsync, rename) before the
//     card answers the command that changed it. If the write fails the card
//     answers 6581 (memory failure) and the change is undone. New keeps a
//     card in memory only.
//   - Plugged: the vpcd transport. Plug connects a Card to vpcd (TCP
//     127.0.0.1:35963 is reader "Virtual PCD 00 00", 35964 "Virtual PCD 00
//     01") and serves its framing: 2-byte big-endian length and payload;
//     1-byte control messages 00 power off, 01 power on, 02 reset, 04 ATR.
//     Unplug removes the card (waiting until vpcd has seen it go), Replug
//     inserts it again, Ready tells when pcscd has powered it. One card per
//     vpcd slot; use one slot per test binary.
//   - Attestation: slot F9 holds a factory attestation key whose certificate
//     (object 5FFF01, "Yubico PIV Attestation") is issued by a "Virtual
//     YubiKey attestation root" (made per card, or given as
//     Options.AttestationCA). ATTEST issues "YubiKey PIV Attestation <slot>"
//     certificates with Yubico's extensions (1.3.6.1.4.1.41482.3.3 firmware,
//     .3.7 serial, .3.8 PIN and touch policy, .3.9 form factor). Verify them
//     with piv.Verifier{Roots: pool containing Card.AttestationRoot()};
//     Yubico's own roots rightly refuse them.
//
// # What the card implements
//
// SELECT (PIV AID; the management AID for the device info, INS 1D), GET
// VERSION, GET SERIAL, VERIFY (retry counter, 63Cx, 6983 when blocked, empty
// VERIFY for status, P1=FF to log out), CHANGE REFERENCE DATA (PIN, PUK),
// RESET RETRY COUNTER, RESET (only with PIN and PUK blocked), SET PIN
// RETRIES, SET MANAGEMENT KEY (3DES, AES-128/192/256), GENERATE (ECC P-256
// 0x11, P-384 0x14, with PIN and touch policies), IMPORT (EC keys), GENERAL
// AUTHENTICATE (ECDSA signatures and ECDH under the slot's PIN policy;
// management key mutual and external authentication), GET DATA and PUT DATA
// (PIV objects 5FC101..5FC123, Yubico objects 5FFF00..5FFF15, the discovery
// object 7E; 6A82 when absent; PIN needed to read printed information and
// biometric objects), GET METADATA for PIN, PUK, 9B and key slots, ATTEST,
// command chaining (CLA 10) and long responses in 256-byte pieces with
// 61xx / GET RESPONSE.
//
// Not implemented: RSA and Ed25519/X25519 keys, touch (touch policies are
// stored and reported, and every touch is taken as given), biometrics,
// secure messaging and SCP11, the OTP, FIDO and OpenPGP applications.
package sim

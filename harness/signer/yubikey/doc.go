// Package yubikey is the Device Attestation Key (DAK) on a YubiKey: a
// signer.Signer whose private key never leaves the key's PIV application,
// driven through github.com/go-piv/piv-go/v2 (libpcsclite and pcscd), plus
// the administration functions behind `hil yubikey ...`.
//
// # Concepts
//
//   - PIV slot: a key reference of the PIV card application (NIST SP
//     800-73-4 Part 1, 3.1 and Table 4) with a certificate data object
//     beside it (Part 1, Table 3). The DAK lives in slot 9c (Digital
//     Signature) by default; Config.Slot and ParseSlot accept 9a, 9c, 9d,
//     9e and the retired key management slots 82 to 95. Open reads the
//     slot's public key from Yubico's GET METADATA (firmware 5.3+) and the
//     DAK certificate from the slot's object, and refuses a slot without a
//     key (ErrSlotEmpty), without a certificate (ErrNoCertificate), with a
//     certificate for another key (ErrKeyMismatch) or outside its
//     validity (ErrExpired, signer.ErrNotYetValid): signer.CheckChain.
//   - PIN, PUK and retry counters (SP 800-73-4 Part 2, 3.2.1 to 3.2.3;
//     Yubico, "PIV PIN, PUK and management key"): 6 to 8 characters each,
//     3 tries by default. Three wrong PINs block the key; only the PUK
//     unblocks it, and a blocked PUK leaves only a PIV reset, which erases
//     the DAK. On a factory line the PIN is known, the PUK never (seed
//     000): a blocked key stops production until someone with the PUK runs
//     `hil yubikey unblock`, or, for a YubiKey provided by Amazon, until
//     Amazon unlocks or replaces it.
//   - PIN file (Config.PINFile): the PIN alone, with at most one trailing
//     line end, mode 0600 or stricter. It is read and checked before any
//     card is touched (*PINFileError), so a file with two line ends or a
//     5- or 9-character PIN never costs a retry; white space before or after
//     the PIN is refused saying so.
//   - Wrong-PIN record (Config.StateDir, WrongPINMemoFile): a wrong-PIN stop
//     is remembered by the PIN file's identity (path, device, inode, size,
//     modification time; nothing derived from the PIN), and the unchanged
//     file is refused before any card is touched (*KnownWrongPINError) until
//     it is edited, replaced or touched; a right PIN clears the record.
//   - PIN guard: the only code that sends the PIN. It reads the retry
//     counter first (an empty VERIFY, which never changes it), refuses at
//     0 (*LockedError, naming the PUK procedure) and at 1 unless the
//     operator allowed the last retry (*LowRetriesError), presents the PIN
//     once, and after a wrong PIN (*WrongPINError, with the retries left)
//     never presents it again. piv-go never sees the PIN for signing:
//     every piv.KeyAuth here says PINPolicyNever, so piv-go's own VERIFY
//     and prompt paths (key.go authTx) stay unused.
//   - PIN and touch policies (Yubico, "PIN and touch policies"): a key
//     with PIN policy "once" needs one VERIFY per card session, "always" a
//     VERIFY right before each signature (the guard reads the counter each
//     time), "never" none (the PIN file is still checked, but not sent).
//     Touch "always" or "cached" makes the key wait for a finger on each
//     (or every 15 s of) signatures. InitDAK has no default for either:
//     the operator chooses.
//   - Card session: one exclusive piv-go connection. Open resets the card
//     first (SCardDisconnect with SCARD_RESET_CARD: the PIV security status
//     is volatile) so that no PIN verified by another program carries
//     over, and Close resets it again so the verification does not
//     outlive the station. One process owns the key; others ask it to sign
//     (`hil signer serve`).
//   - Unplug and replug: when a signature fails because the card went away
//     (a PC/SC error, or a session that lost its PIN verification), Sign
//     waits up to Config.ReplugTimeout for the same serial to come back,
//     opens a new session (reset, PIN guard, one VERIFY: a new session,
//     not a retry of a refused PIN), checks the slot still holds the same
//     key and signs; otherwise it fails with a *ReplugError (ErrCardGone).
//   - Attestation (Yubico, "PIV attestation"): the card's factory key in
//     slot f9 certifies that a slot's key was generated on the card, with
//     its serial, firmware and policies. With Config.Attestation
//     "required", Open verifies that chain to Config.AttestationRoots
//     (Yubico's roots, embedded in piv-go, by default; the virtual
//     YubiKey's root from sim.Card.AttestationRoot in tests) and that it
//     names this serial, slot and key (*AttestationError). Imported keys
//     have no attestation.
//   - Self-managed keys (the ACK YubiKey guide): InitDAK generates the DAK on the
//     YubiKey (GENERATE ASYMMETRIC KEY PAIR, SP 800-73-4 Part 2, 3.3.2),
//     has it sign a CSR for the DAK's CA, and writes the attestation beside
//     it; ImportDAKCertificate stores the issued certificate (PUT DATA,
//     Part 2, 3.3.1) after checking it certifies the slot's key.
//   - Finding the card: by serial number (Config.Serial), among readers
//     whose name contains Config.Reader (DefaultReader "yubikey";
//     "Virtual PCD" for the emulator). *NotFoundError lists the serials
//     seen. Discovery, the card reset and the PIN/PUK counters use a small
//     PC/SC helper that never sends a secret (pcsc_linux.go), because
//     piv-go v2.6.0 leaks an exclusive handle when piv.Open meets a non-PIV
//     card, cannot reset a card and cannot read the PUK counter;
//     everything that signs, VERIFYs or writes goes through piv-go.
//
// Errors wrap their causes; callers branch with errors.Is on the sentinels
// (ErrLocked, ErrLowRetries, ErrWrongPIN, ErrCardNotFound, ErrSlotEmpty,
// ErrNoCertificate, ErrKeyMismatch, ErrExpired, ErrAttestation,
// ErrCardGone, ...) or errors.As on the typed errors. No error, log line
// or Description contains a PIN, PUK or management key, and nothing here
// runs a program with a PIN in its arguments.
//
// The tests drive the virtual YubiKey of package sim through the real
// pcscd (vsmartcard's vpcd driver, reader "Virtual PCD 00 01"), with
// openssl and Debian's yubico-piv-tool as independent judges.
package yubikey

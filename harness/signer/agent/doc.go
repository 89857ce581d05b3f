// Package agent is the signing agent: one process (`hil signer serve`) owns
// the Device Attestation Key and signs for every other process (parallel
// Ginkgo processes, station slots, `hil provision`) over a Unix socket.
//
// A YubiKey is opened exclusively by piv-go, so only one process
// can use it; and a YubiKey 5 takes ~70 ms per P-256 signature, so the agent
// keeps it busy whenever work waits and does everything else elsewhere.
//
// # Concepts
//
//   - Server: the agent, around the one issuance pipeline (issue.Pipeline):
//     the same check, ledger reservation with the DAK budget, signature,
//     audit record and ledger record as direct signing at a station. One
//     worker goroutine issues (Pipeline.IssueChecked), one request at a
//     time. Connection goroutines parse requests, answer status, lookup,
//     stored and verified from the ledger, and check each CSR against the
//     product profile (Pipeline.Check, the CSR's only check) before it is
//     queued, so a bad request or a bad CSR never waits for the key and
//     never spends budget.
//   - Fair queue: issue requests queue per connection; the workers serve
//     connections round robin, so a client that sends 20 requests cannot
//     make a client that sends one wait for all 20. A YubiKey has one
//     worker (one signature at a time); an in-process DAK has several, so
//     concurrent requests sign on every core and share the ledger's and
//     the audit log's fsyncs (group commit).
//   - Bounded whatever clients do (Server's limits): a connection idle for
//     IdleTimeout (30 s; not while it waits for or reads an answer) is
//     closed, and the Client dials again when next needed; a request line
//     unfinished ReadTimeout (10 s) after its first byte is cut off; a
//     client with 64 KiB of answers unread is not read from until it
//     reads, and is dropped (logged) when writing to it stalls for
//     WriteTimeout (10 s) or its unread answers pass MaxPending (1 MiB;
//     MaxPendingTotal, 32 MiB, across clients); with MaxClients (256)
//     connected, a new connection closes the one idle the longest, and is
//     refused busy only when every one is busy. Status answers reuse the
//     ledger's budget figure for up to 250 ms.
//   - Exactly once per device key: the ledger answers. A CSR whose key the
//     ledger holds a chain for (a retry, in this run or after a restart, or
//     a new CSR for the same key) gets that chain back with reused:true:
//     nothing is signed and no budget is spent. Such requests are answered
//     on the connection, without waiting for the key.
//   - Budget and audit: the pipeline reserves each signature in the ledger
//     with the DAK's budget in one transaction before it signs, and appends
//     the audit record (fsynced) before the certificate leaves. If the
//     record cannot be written the certificate is held back (audit_failed)
//     and the ledger record stays reserved: a retry signs again under it,
//     counted. Serve refuses to start when the ledger counts fewer
//     signatures for the DAK than the audit log holds (a deleted or
//     rolled-back ledger: `hil ledger import` rebuilds it).
//   - Socket safety: the socket is created with mode 0600 (bound in a fresh
//     0700 directory, chmod'ed, then renamed into place) in a directory that
//     belongs to this user and that nobody else can write. "<socket>.lock"
//     (flock, holding the pid) keeps a second agent off the same path; a
//     stale socket (nobody answers) is replaced. The agent also refuses
//     peers whose SO_PEERCRED uid is neither its own nor root's.
//   - Client: checks the socket before connecting (exists, is a socket,
//     owned by this user; then the peer's uid), shares one connection among
//     goroutines, and redials when the agent restarted, resending a request
//     whose answer was lost (safe: every operation is idempotent).
//     Client.Issuer presents it as a device.Issuer, the interface drivers
//     provision through.
//   - Shutdown: when Serve's context ends, the agent stops accepting and
//     removes the socket, answers queued requests shutting_down (nothing was
//     signed for them), finishes and answers the signature in progress, and
//     returns.
//
// # Protocol
//
// Newline-delimited JSON over a Unix stream socket: each request is one JSON
// object on one line (at most MaxRequestLine bytes), each answer is one JSON
// object on one line. A connection carries any number of requests, and a
// client may send more before the answers come: answers carry the request's
// id and may come in a different order (a status, a lookup or a refused CSR
// is answered at once; an issue waits its turn for the DAK). Unknown fields
// are ignored. Every request but status needs an id.
//
// Issue (id, target and csr are required; target names the device's bench
// slot for the ledger and the audit log; device_id, the device's own
// serial/DSN, and replaces, the PEM of the leaf the device held before a
// reprovision, are optional and go to the ledger):
//
//	{"op":"issue","id":"7","target":"slot3","device_id":"ACS-0042","csr":"-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n"}
//	{"id":"7","ok":true,"chain":"-----BEGIN CERTIFICATE-----\n...","serial":"3A9F...","sha256":"<certificate SHA-256>",
//	 "csr_sha256":"<SHA-256 of the CSR DER sent>","budget":{"used":812,"max":1000,"remaining":188}}
//
// "chain" is the device certificate, the DAK certificate and any
// intermediates, PEM (as `cat device-certificate.pem dak-certificate.pem`).
// "reused":true marks a chain the ledger already held for the CSR's key
// (nothing signed); "warning" carries the budget warning from 90% on;
// "budget" is the ledger's count ("max" <= 0 and "remaining" -1:
// unlimited), absent when the ledger could not be read for it.
//
// Lookup (key: the device public key, base64 of its SubjectPublicKeyInfo
// DER): what the ledger holds for the key's live record. "state" is
// reserved, issued, stored or verified; the chain comes with it once the
// record is past reserved. No "state": the ledger knows nothing of the key.
//
//	{"op":"lookup","id":"8","key":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE..."}
//	{"id":"8","ok":true,"state":"issued","chain":"-----BEGIN CERTIFICATE-----\n...","serial":"3A9F...","sha256":"..."}
//	{"id":"8","ok":true}
//
// Stored and verified (certificate: the device's leaf certificate PEM, a
// chain is fine): the device holds the chain; the chain was read back and
// verified. The agent advances the ledger record (never backwards); a
// certificate the ledger has no live record of is not_found.
//
//	{"op":"stored","id":"9","certificate":"-----BEGIN CERTIFICATE-----\n..."}
//	{"id":"9","ok":true}
//
// Status (id optional):
//
//	{"op":"status","id":"10"}
//	{"id":"10","ok":true,"status":{"dak":"softdak ...","dak_subject":"CN=...","dak_sha256":"...",
//	 "budget":{"used":812,"max":1000,"remaining":188},"queue":3,"signing":true,"issued":40,"reused":2,
//	 "rejected":1,"clients":4,"pid":4242,"started":"2026-...Z","uptime_seconds":3600.5,
//	 "ledger":"/var/lib/hil/out/ledger.db","audit_log":"/var/lib/hil/signer/audit.jsonl"}}
//
// "budget" comes from the ledger; when it cannot be read, "ledger_error"
// says why instead.
//
// Errors:
//
//	{"id":"7","ok":false,"error":{"code":"csr_rejected","reason":"device_type","message":"..."}}
//
// Codes, and what the client's *Error matches with errors.Is:
//
//	csr_rejected      pki.ErrCSRRejected (and the reason's sentinel, e.g. pki.ErrDeviceType)
//	budget_exhausted  ledger.ErrBudgetExhausted, budget.ErrExhausted
//	signer_failed     ErrSignerFailed (the DAK could not sign: unplugged, locked...)
//	audit_failed      ErrAuditFailed, issue.ErrAudit (signed and counted, held back: retry)
//	ledger_failed     ErrLedgerFailed, issue.ErrLedger, and the reason's sentinel:
//	                  unavailable, corrupt, live_record, state, schema_too_new (ledger.Err...)
//	not_found         ledger.ErrNotFound (stored/verified: no live record of the certificate)
//	bad_request       ErrBadRequest (not JSON, unknown op, missing field, line too long, CSR not PEM)
//	busy              ErrBusy (queue or client limit reached: retry later)
//	shutting_down     ErrShuttingDown (nothing was signed: retry with the next agent)
//	forbidden         ErrForbidden (the peer is another user)
//
// An answer with an empty id is about the connection (a line that was not a
// request, or a refused connection, which the agent then closes).
//
// Try it by hand: printf '{"op":"status"}\n' | socat - UNIX-CONNECT:agent.sock
package agent

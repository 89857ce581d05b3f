// Package agent is the signing agent: one process (`hil signer serve`) owns
// the Device Attestation Key and signs for every other process (parallel
// Ginkgo processes, station slots, `hil provision`) over a Unix socket.
//
// A YubiKey is opened exclusively by piv-go (seed 000), so only one process
// can use it; and a YubiKey 5 takes ~70 ms per P-256 signature, so the agent
// keeps it busy whenever work waits and does everything else elsewhere.
//
// # Concepts
//
//   - Server: the agent. One worker goroutine owns the signer.Signer and
//     makes one signature at a time. Connection goroutines parse requests,
//     answer status, and check each CSR against the product profile before
//     it is queued, so a bad request or a bad CSR never waits for the key
//     and never spends budget.
//   - Fair queue: issue requests queue per connection; the worker serves
//     connections round robin, so a client that sends 20 requests cannot
//     make a client that sends one wait for all 20.
//   - Budget and audit: right before each signature the worker reserves it
//     in the DAK's budget (budget.Budget.Reserve persists the count first);
//     after it, the worker appends the audit record (audit.Log.Append
//     fsyncs it) and only then answers. If the record cannot be written the
//     certificate is held back (answer audit_failed) and the agent signs
//     nothing new until the log can be written again; a retry then delivers
//     it. Serve refuses to start when the budget counts fewer signatures
//     than the audit log records for the DAK (a deleted or replaced
//     counter).
//   - Idempotence: requests are keyed by the SHA-256 of the CSR's DER. A CSR
//     issued before, in this run or in an earlier one (from the audit log,
//     same DAK), is answered with the recorded chain: nothing is signed and
//     no budget is spent. No certificate is issued twice because of a retry.
//     A device that signs a new CSR (even for the same key) is a new
//     request.
//   - Socket safety: the socket is created with mode 0600 (bound in a fresh
//     0700 directory, chmod'ed, then renamed into place) in a directory that
//     belongs to this user and that nobody else can write. "<socket>.lock"
//     (flock, holding the pid) keeps a second agent off the same path; a
//     stale socket (nobody answers) is replaced. The agent also refuses
//     peers whose SO_PEERCRED uid is neither its own nor root's.
//   - Client: checks the socket before connecting (exists, is a socket,
//     owned by this user; then the peer's uid), shares one connection among
//     goroutines, and redials when the agent restarted, resending a request
//     whose answer was lost (safe: issuing is idempotent).
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
// id and may come in a different order (a status or a refused CSR is
// answered at once; an issue waits its turn for the DAK). Unknown fields
// are ignored.
//
// Issue (id, target and csr are required; target names the device or slot
// for the audit log):
//
//	{"op":"issue","id":"7","target":"slot3/acs-0042","csr":"-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n"}
//	{"id":"7","ok":true,"chain":"-----BEGIN CERTIFICATE-----\n...","serial":"3A9F...","sha256":"<certificate SHA-256>",
//	 "csr_sha256":"<SHA-256 of the CSR DER>","budget":{"used":812,"max":1000,"remaining":188}}
//
// "chain" is the device certificate, the DAK certificate and any
// intermediates, PEM (as `cat device-certificate.pem dak-certificate.pem`).
// "reused":true marks a retry answered from the record; "warning" carries
// the budget warning from 90% on; "budget" is absent when the agent does
// not count signatures.
//
// Status (id optional):
//
//	{"op":"status","id":"8"}
//	{"id":"8","ok":true,"status":{"dak":"softdak ...","dak_subject":"CN=...","dak_sha256":"...",
//	 "budget":{"used":812,"max":1000,"remaining":188},"queue":3,"signing":true,"issued":40,"reused":2,
//	 "rejected":1,"unaudited":0,"clients":4,"pid":4242,"started":"2026-...Z","uptime_seconds":3600.5,
//	 "audit_log":"/var/lib/hil/signer/audit.jsonl"}}
//
// Errors:
//
//	{"id":"7","ok":false,"error":{"code":"csr_rejected","reason":"device_type","message":"..."}}
//
// Codes, and what the client's *Error matches with errors.Is:
//
//	csr_rejected      pki.ErrCSRRejected (and the reason's sentinel, e.g. pki.ErrDeviceType)
//	budget_exhausted  budget.ErrExhausted
//	signer_failed     ErrSignerFailed (the DAK could not sign: unplugged, locked...)
//	audit_failed      ErrAuditFailed
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

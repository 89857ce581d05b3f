// Package issue is the one issuance pipeline: every certificate hilbench signs, directly at a
// station or inside the signing agent, goes through it.
//
// # Concepts
//
//   - Exactly once per device key: a CSR whose key the ledger already holds a chain for gets
//     that chain back, with no new signature. A key whose reservation a crash interrupted is
//     signed again under the same record (its Signatures count and the DAK budget say so).
//   - Order, a key outside the process (a YubiKey): CSR checked once against the profile (a bad
//     CSR costs nothing) -> reservation in the ledger with the DAK budget in the same transaction
//     (every signature is counted before it is made) -> sign -> signature checked -> the audit
//     log (the signer's append-only evidence) -> the ledger record moves to issued. A chain
//     leaves the pipeline only once both hold it.
//   - Order, an in-process key (SoftDAK): CSR checked -> the ledger read: no live record of the
//     key -> sign -> the ledger records reservation, budget and certificate in one transaction
//     (ReserveIssued) -> the audit log. One durable ledger write per certificate instead of two.
//     Why this keeps the rules: the signature exists only in this process's memory until the
//     ledger holds it; a crash or a refusal before then loses a certificate nobody ever had,
//     which the budget need not count (it counts the certificates that can exist). The ledger
//     still decides first (one live record per key, the budget), so the audit log never holds
//     a certificate the ledger refused. A crash between the ledger and the audit log leaves an
//     issued record the audit log lacks, whose chain never left: before the ledger's chain for a
//     key is handed out (Issue, and Lookup, whose answer the signing agent hands out), it is
//     appended to the audit log unless the log holds it already. A key
//     the ledger holds a record of (a chain, a reservation), and every signature near the end
//     of the budget (SignAheadMargin), or after the ledger refused one for the budget, takes
//     the first order: a second request for a key with a chain makes no signature.
//   - The pipeline implements device.Issuer, the interface drivers provision through; the
//     signing agent's client implements it too.
package issue

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
)

// WarnPercent is the share of the DAK budget from which each issuance logs a warning.
const WarnPercent = 90

// Pipeline issues certificates exactly once per device key. Set the fields, then use it; it is
// safe for concurrent use.
type Pipeline struct {
	Certs  *pki.Issuer  // profile, DAK signer and certificate, intermediates, validity
	Ledger ledger.Store // the record of every identity, and the DAK budget
	Audit  *audit.Log   // append-only evidence of every signature; nil: none (tests)
	// MaxSignatures is the DAK's budget (<= 0: unlimited, still counted).
	MaxSignatures int64
	Station       string // station id recorded with each reservation
	// Holder names this process in reservations (default: host, pid and process start time).
	Holder string
	// ReservationLease: another host's unfinished reservation older than this may be taken
	// over (default DefaultReservationLease). On this host a reservation is taken over as soon
	// as the process that made it is gone.
	ReservationLease time.Duration
	RunID            string // run id recorded with each reservation
	TrustAnchors     []*x509.Certificate
	// Logf receives budget warnings and re-signing notes; nil: discarded.
	Logf func(format string, args ...any)
	// Owner is released by Close after the ledger and the audit log: the lock that makes this
	// process the one owner of the DAK's state (station.OpenPipeline); nil: none.
	Owner io.Closer

	signMu sync.Mutex // one signature at a time for keys outside the process: a YubiKey has one session
	// reserveFirst: the ledger refused a signature made ahead (budget used up): an in-process
	// key too signs only once reserved from then on.
	reserveFirst atomic.Bool
	budgetUsed   atomic.Int64 // the DAK's largest signature count a reservation returned (0: none yet)

	pendMu    sync.Mutex
	unaudited []*pending // signed, held back: the audit log could not record them
	keyMu     keyLocks   // one issuance at a time per device key
}

var _ device.Issuer = (*Pipeline)(nil)

var (
	// ErrAudit: the certificate was signed and counted, but the audit log could not record it,
	// so it is held back until it can (a hardware key's ledger record stays reserved; an
	// in-process key's is issued, and no retry gets its chain before the audit log holds it).
	ErrAudit = errors.New("the audit log cannot be written")
	// ErrLedger: the ledger could not be read or written (nothing left the pipeline). The
	// store's own error stays in the chain (ledger.ErrUnavailable, ledger.ErrCorrupt...).
	ErrLedger = errors.New("the ledger failed")
)

// stepError marks an error as one step's failure (errors.Is matches its sentinel) without
// changing its message.
type stepError struct {
	err  error
	kind error
}

func (e *stepError) Error() string        { return e.err.Error() }
func (e *stepError) Unwrap() error        { return e.err }
func (e *stepError) Is(target error) bool { return target == e.kind }

func ledgerErr(err error) error { return &stepError{err: err, kind: ErrLedger} }

// BudgetError says the DAK cannot sign again. It matches ledger.ErrBudgetExhausted.
type BudgetError struct {
	DAK    string // subject
	Used   int64
	Max    int64
	Ledger string
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("DAK signature budget exhausted: %d/%d signatures used by DAK %q (ledger %s); "+
		"this DAK must not sign again: request a new DAK for the device profile (the DAK's maximum number of signatures: "+
		"\"Amazon Sidewalk bulk provisioning workflow\", AWS IoT Wireless Developer Guide) and configure the bench with it",
		e.Used, e.Max, e.DAK, e.Ledger)
}

func (e *BudgetError) Is(target error) bool { return target == ledger.ErrBudgetExhausted }

// DAKSHA256 is the SHA-256 of the DAK certificate, the key of its budget.
func (p *Pipeline) DAKSHA256() string { return audit.SHA256Hex(p.Certs.CA.Raw) }

// Roots are the trust anchors chains must verify to.
func (p *Pipeline) Roots() []*x509.Certificate { return p.TrustAnchors }

// Issue returns the chain for the CSR's key: the one the ledger holds, or a new one.
func (p *Pipeline) Issue(ctx context.Context, req device.IssueRequest) (*pki.Issued, error) {
	is, _, err := p.IssueResult(ctx, req)
	return is, err
}

// Checked is a request whose CSR passed the profile's checks.
type Checked struct {
	Req       device.IssueRequest
	CSR       *x509.CertificateRequest
	DeviceKey string // ledger.KeyHash of the CSR's key

	// Client and RequestID, when set, go to the audit record: the process that asked (the
	// signing agent knows its peer) and its request id.
	Client    *audit.Peer
	RequestID string
}

// Check checks a request's CSR against the product profile (self-signature, key, subject). A
// CSR is checked once, here: the signing agent does it on the client's connection, so bad CSRs
// never wait for the DAK.
func (p *Pipeline) Check(req device.IssueRequest) (*Checked, error) {
	csr, err := p.Certs.Profile.CheckCSR(req.CSRPEM)
	if err != nil {
		return nil, err
	}
	key, err := ledger.KeyHash(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Checked{Req: req, CSR: csr, DeviceKey: key}, nil
}

// IssueResult is Issue, also saying whether the chain came from the ledger (no signature).
func (p *Pipeline) IssueResult(ctx context.Context, req device.IssueRequest) (*pki.Issued, bool, error) {
	c, err := p.Check(req)
	if err != nil {
		return nil, false, err
	}
	return p.IssueChecked(ctx, c)
}

// IssueChecked issues for a checked request: the ledger's chain for its key, or a new one.
func (p *Pipeline) IssueChecked(ctx context.Context, c *Checked) (*pki.Issued, bool, error) {
	req, csr, key := c.Req, c.CSR, c.DeviceKey
	unlock := p.keyMu.lock(key)
	defer unlock()

	if _, err := p.flushUnaudited(ctx); err != nil {
		return nil, false, err
	}
	res := ledger.Reservation{
		DeviceKey: key, DeviceID: req.DeviceID, Target: req.Target, Station: p.Station, RunID: p.RunID,
		DAKSHA256: p.DAKSHA256(), CSRSHA256: audit.SHA256Hex(csr.Raw), MaxSignatures: p.MaxSignatures,
		Holder: p.holder(),
	}
	if req.Replaces != nil {
		old, err := p.liveFor(ctx, req.Replaces)
		if err != nil {
			return nil, false, err
		}
		if old != nil {
			res.Replaces = []int64{old.ID}
		}
	}
	// An in-process key signs first and records the certificate in one transaction with the
	// reservation (see the package doc); a hardware key's signature is counted before it is made.
	var is *pki.Issued
	ahead, err := p.signAhead(ctx, key)
	if err != nil {
		return nil, false, err
	}
	if ahead {
		if is, err = p.Certs.IssueChecked(csr); err != nil {
			return nil, false, err
		}
	}
	reserve := func() (*ledger.Record, ledger.Budget, error) {
		if is != nil {
			return p.Ledger.ReserveIssued(ctx, res, ledgerCertificate(is))
		}
		return p.Ledger.Reserve(ctx, res)
	}
	// A key outside the process reserves first: a new device (the common case) costs one
	// transaction, no lookup. A key with a live record fails it without writing anything; the
	// record then says why.
	rec, budget, err := reserve()
	if errors.Is(err, ledger.ErrLiveRecord) {
		live, lerr := p.liveByHash(ctx, key)
		if lerr != nil {
			return nil, false, lerr
		}
		switch {
		case live == nil:
			// Another key's record holds the device id: err says so.
		case live.State != ledger.Reserved:
			// The ledger holds this key's chain (a rerun, or a chain an audit failure held back):
			// no signature (one made ahead in process is dropped: it never left).
			is, err := issuedFromRecord(live, csr)
			if err != nil {
				return nil, false, ledgerErr(err)
			}
			if err := p.auditRecorded(live, c); err != nil {
				return nil, false, err
			}
			return is, true, nil
		default:
			lease := p.ReservationLease
			if lease <= 0 {
				lease = DefaultReservationLease
			}
			if !holderGone(live.Holder, live.ReservedAt, lease, time.Now()) {
				return nil, false, ledgerErr(fmt.Errorf("%w: the device key is being issued for by %s (ledger record %d, reserved %s): "+
					"not signing twice; retry once that station or process is done",
					ledger.ErrLiveRecord, live.Holder, live.ID, live.ReservedAt.Format(time.RFC3339)))
			}
			// Its holder died between reservation and record: finish the reservation here.
			res.TakeOver, res.TakeOverFrom = true, live.Holder
			rec, budget, err = reserve()
		}
	}
	if errors.Is(err, ledger.ErrBudgetExhausted) {
		// Sign ahead no more: from here on this pipeline's signatures wait for a reservation.
		p.reserveFirst.Store(true)
		b, _ := p.Ledger.Budget(ctx, res.DAKSHA256)
		return nil, false, &BudgetError{DAK: p.Certs.CA.Subject.String(), Used: b.Used, Max: p.MaxSignatures, Ledger: p.Ledger.Describe()}
	}
	if err != nil {
		what := "nothing was signed"
		if is != nil {
			what = "the certificate signed for it in this process is dropped: it never left"
		}
		return nil, false, ledgerErr(fmt.Errorf("reserving a signature in the ledger %s (%s): %w", p.Ledger.Describe(), what, err))
	}
	if rec.Signatures > 1 {
		p.logf("%s: the device key's reservation (ledger record %d) was interrupted before its chain was recorded; signing again (signature %d for this record)",
			req.Target, rec.ID, rec.Signatures)
	}
	p.sawBudget(budget.Used)
	if budget.Max > 0 && budget.Used*100 >= budget.Max*WarnPercent {
		p.logf("DAK budget: %d/%d signatures used, %d left: order a new DAK before this one runs out",
			budget.Used, budget.Max, budget.Max-budget.Used)
	}

	pend := &pending{id: rec.ID, issued: is, inLedger: is != nil}
	if is == nil {
		// A hardware key has one session: one signature at a time. An in-process key signs on
		// every core.
		if !pki.SignsInProcess(p.Certs.Signer) {
			p.signMu.Lock()
		}
		is, err = p.Certs.IssueChecked(csr)
		if !pki.SignsInProcess(p.Certs.Signer) {
			p.signMu.Unlock()
		}
		if err != nil {
			return nil, false, err
		}
		pend.issued = is
	}
	if p.Audit != nil {
		ar := audit.FromIssued(is)
		ar.Target, ar.BudgetUsed, ar.BudgetMax = req.Target, budget.Used, budget.Max
		ar.Client, ar.RequestID = c.Client, c.RequestID
		pend.audit = &ar
	}
	if err := p.record(ctx, pend); err != nil {
		return nil, false, err
	}
	return is, false, nil
}

// SignAheadMargin is how many signatures a DAK's budget must have left, beyond the count this
// pipeline last saw, for an in-process key to sign before the ledger is asked: more than all
// stations sharing the DAK sign at once, so the ledger does not refuse a signature made ahead.
const SignAheadMargin = 1000

// signAhead says whether the key signs before the ledger is asked (see the package doc): an
// in-process key, for a device key the ledger holds no live record of (a chain is handed out
// again without a signature; a reservation is finished under its record, counted first), with
// the budget far from its end (near it every signature waits for its reservation).
func (p *Pipeline) signAhead(ctx context.Context, key string) (bool, error) {
	if !pki.SignsInProcess(p.Certs.Signer) || p.reserveFirst.Load() {
		return false, nil
	}
	if p.MaxSignatures > 0 {
		used := p.budgetUsed.Load()
		if used == 0 || used+SignAheadMargin >= p.MaxSignatures {
			return false, nil
		}
	}
	live, err := p.liveByHash(ctx, key)
	return live == nil && err == nil, err
}

// sawBudget keeps the largest count of the DAK's signatures a reservation returned.
func (p *Pipeline) sawBudget(used int64) {
	for {
		old := p.budgetUsed.Load()
		if used <= old || p.budgetUsed.CompareAndSwap(old, used) {
			return
		}
	}
}

// pending is a signed certificate on its way into the audit log and the ledger.
type pending struct {
	id       int64         // its ledger record
	issued   *pki.Issued   // the chain
	audit    *audit.Record // nil once appended (or without an audit log)
	inLedger bool          // the record is issued already (ReserveIssued)
}

// ledgerCertificate is what the ledger records of an issuance.
func ledgerCertificate(is *pki.Issued) ledger.Certificate {
	leaf := is.Certificate
	return ledger.Certificate{
		Serial: audit.SerialHex(leaf), CertSHA256: pki.Fingerprint(leaf), Subject: leaf.Subject.String(),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, ChainPEM: string(is.ChainPEM),
	}
}

// auditRecorded appends a chain the ledger holds to the audit log before it leaves, unless the
// log holds it already (it appends once): a station that stopped between recording an in-process
// signature in the ledger and appending it to the audit log left it out. Only this DAK's
// certificates, and only records that name their CSR, as every record of a pipeline does. c is
// the request the chain answers (nil: a lookup).
func (p *Pipeline) auditRecorded(rec *ledger.Record, c *Checked) error {
	if p.Audit == nil || rec.DAKSHA256 != p.DAKSHA256() || rec.CertSHA256 == "" || len(rec.CSRSHA256) != 64 {
		return nil
	}
	ar := audit.Record{CSRSHA256: rec.CSRSHA256, Serial: rec.Serial, CertSHA256: rec.CertSHA256, Subject: rec.Subject,
		DAKSHA256: rec.DAKSHA256, ChainPEM: rec.ChainPEM, Target: rec.Target}
	if c != nil {
		ar.Target, ar.Client, ar.RequestID = c.Req.Target, c.Client, c.RequestID
	}
	if err := p.Audit.Append(ar); err != nil {
		return &stepError{kind: ErrAudit, err: fmt.Errorf("recording certificate %s (ledger record %d) in the audit log before handing it out again: %w",
			rec.Serial, rec.ID, err)}
	}
	return nil
}

// record appends a signed certificate to the audit log, then moves its ledger record to issued.
// Nothing leaves the station that its records do not hold: when the audit log cannot be written
// the chain is held back and kept here, and the pipeline signs nothing more until it is recorded
// (each retry would otherwise spend another signature); once recorded, the device's retry gets
// it from the ledger.
func (p *Pipeline) record(ctx context.Context, pend *pending) error {
	if pend.audit != nil {
		if err := p.Audit.Append(*pend.audit); err != nil {
			p.pendMu.Lock()
			p.unaudited = append(p.unaudited, pend)
			p.pendMu.Unlock()
			return &stepError{kind: ErrAudit,
				err: fmt.Errorf("recording certificate %s in the audit log (it was signed and counted, but is held back until it is recorded; "+
					"nothing more is signed until then): %w", pend.audit.Serial, err)}
		}
		pend.audit = nil
	}
	if pend.inLedger {
		return nil
	}
	leaf := pend.issued.Certificate
	if err := p.Ledger.Issue(ctx, pend.id, ledgerCertificate(pend.issued)); err != nil {
		return ledgerErr(fmt.Errorf("recording certificate %s in the ledger %s (it was signed and counted, but is held back): %w",
			audit.SerialHex(leaf), p.Ledger.Describe(), err))
	}
	return nil
}

// flushUnaudited records the certificates an audit failure held back and says how many; it
// fails while any is left.
func (p *Pipeline) flushUnaudited(ctx context.Context) (int, error) {
	p.pendMu.Lock()
	list := p.unaudited
	p.unaudited = nil
	p.pendMu.Unlock()
	var first error
	n := 0
	for _, pend := range list {
		if err := p.record(ctx, pend); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		n++
		p.logf("certificate %s recorded in the audit log and the ledger after all", audit.SerialHex(pend.issued.Certificate))
	}
	return n, first
}

// Lookup is what the ledger holds for a device public key.
func (p *Pipeline) Lookup(ctx context.Context, pub crypto.PublicKey) (*device.Known, error) {
	key, err := ledger.KeyHash(pub)
	if err != nil {
		return nil, err
	}
	rec, err := p.liveByHash(ctx, key)
	if err != nil || rec == nil {
		return nil, err
	}
	k := &device.Known{State: string(rec.State)}
	if rec.State != ledger.Reserved {
		if k.Issued, err = issuedFromRecord(rec, nil); err != nil {
			return nil, ledgerErr(err)
		}
		// The chain may leave with the answer (the signing agent hands it out): the audit log
		// holds it first. Under the key's lock, so an issuance in flight appends its own record.
		unlock := p.keyMu.lock(key)
		err = p.auditRecorded(rec, nil)
		unlock()
		if err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Stored records that the device holds leaf's chain.
func (p *Pipeline) Stored(ctx context.Context, leaf *x509.Certificate) error {
	return p.advance(ctx, leaf, ledger.Stored)
}

// Verified records that leaf's chain was read back from the device and verified.
func (p *Pipeline) Verified(ctx context.Context, leaf *x509.Certificate) error {
	return p.advance(ctx, leaf, ledger.Verified)
}

func (p *Pipeline) advance(ctx context.Context, leaf *x509.Certificate, to ledger.State) error {
	rec, err := p.liveFor(ctx, leaf)
	if err != nil {
		return err
	}
	if rec == nil || rec.CertSHA256 != pki.Fingerprint(leaf) {
		return fmt.Errorf("the ledger %s has no live record of certificate %s: %w", p.Ledger.Describe(), pki.Fingerprint(leaf), ledger.ErrNotFound)
	}
	if err := p.Ledger.Advance(ctx, rec.ID, to); err != nil {
		return ledgerErr(fmt.Errorf("recording certificate %s as %s in the ledger %s: %w", rec.Serial, to, p.Ledger.Describe(), err))
	}
	return nil
}

// liveFor is the live record of a certificate's key, nil when the ledger has none.
func (p *Pipeline) liveFor(ctx context.Context, leaf *x509.Certificate) (*ledger.Record, error) {
	return p.liveByKey(ctx, leaf.PublicKey)
}

// liveByKey is the live record of a device public key, nil when the ledger has none.
func (p *Pipeline) liveByKey(ctx context.Context, pub crypto.PublicKey) (*ledger.Record, error) {
	key, err := ledger.KeyHash(pub)
	if err != nil {
		return nil, err
	}
	return p.liveByHash(ctx, key)
}

// liveByHash is the live record of a device key hash, nil when the ledger has none.
func (p *Pipeline) liveByHash(ctx context.Context, key string) (*ledger.Record, error) {
	rec, err := p.Ledger.Live(ctx, key)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, ledgerErr(fmt.Errorf("looking up the device key in the ledger %s: %w", p.Ledger.Describe(), err))
	}
	return rec, nil
}

func (p *Pipeline) holder() string {
	if p.Holder != "" {
		return p.Holder
	}
	return processHolder()
}

func (p *Pipeline) logf(format string, args ...any) {
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

// issuedFromRecord rebuilds an issuance from a ledger record's chain. csr, when given, is the
// device's current CSR (its key is the record's key).
func issuedFromRecord(rec *ledger.Record, csr *x509.CertificateRequest) (*pki.Issued, error) {
	chain, err := pki.ParseChainPEM([]byte(rec.ChainPEM))
	if err != nil || len(chain) == 0 {
		return nil, fmt.Errorf("ledger record %d (%s) has no readable chain: %v: %w", rec.ID, rec.State, err, ledger.ErrCorrupt)
	}
	if csr == nil {
		csr = &x509.CertificateRequest{PublicKey: chain[0].PublicKey}
	}
	return &pki.Issued{CSR: csr, Certificate: chain[0], Chain: chain, ChainPEM: []byte(rec.ChainPEM)}, nil
}

// CSRPEM encodes a CSR's DER as PEM.
func CSRPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// keyLocks serialises issuance per device key, so two slots presenting one key (a device moved
// mid-run) never reserve twice.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

package ack

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"hilbench/harness/device"
	"hilbench/harness/pki"
)

// MaxRecoveries is how many restarts or silences one Provision recovers from.
const MaxRecoveries = 3

// provisioning is one Provision call's memory across recoveries.
type provisioning struct {
	m        *Module
	iss      device.Issuer
	opts     device.Options
	keyMade  bool                     // a KEYGEN of this call was answered OK
	csr      *x509.CertificateRequest // the module's CSR read in this call (its key)
	replaces *x509.Certificate        // the leaf a reprovision replaces
	reused   bool                     // the chain came from the ledger
}

// Provision runs the native cycle of PROTOCOL.md, exactly once per module key (harness/device
// once.go):
//
//   - HELLO. A provisioned module's chain is read: the chain the ledger records for its key is
//     verified and reported Already; another chain is refused (device.ErrAlreadyProvisioned)
//     unless opts.Reprovision (KEYGEN force=1; the new identity Replaces the old leaf).
//   - A keyed module keeps its key (an interrupted run made it): its CSR goes to the Issuer,
//     which hands back the chain it recorded for the key (Result.Reused) or finishes the
//     reservation. KEYGEN only for a blank module, a key whose record was replaced, or (with
//     Reprovision) a key whose identity was verified.
//   - CSR, issue, BEGIN/DATA/COMMIT (then iss.Stored), read back and device.Verify plus HELLO's
//     word (state, cert_sha256, CN = DSN) (then iss.Verified).
//
// A Module issues at most once. A restart or (with Config.PowerCycle) a silence is recovered
// from up to MaxRecoveries times, continuing from the state HELLO reports. A failed Provision
// returns, with its error, a Result holding the chain issued (if any).
func (m *Module) Provision(ctx context.Context, iss device.Issuer, opts device.Options) (*device.Result, error) {
	m.op.Lock()
	defer m.op.Unlock()
	if m.cfg.Profile == nil {
		return nil, m.fail(StepCSR, errors.New("no product profile: the CSR subject comes from its [dn] section"))
	}
	if iss == nil {
		return nil, m.fail(device.StepIssue, errors.New("no issuer given"))
	}
	p := &provisioning{m: m, iss: iss, opts: opts}
	name := m.cfg.Name
	if m.cfg.PowerCycle != nil {
		// A module that answers nothing three times running has lost power or hung: cycling
		// its power beats waiting out every retransmission.
		m.t.SetSilentAfter(SilentSends)
		defer m.t.SetSilentAfter(0)
	}

	opts.Step(name, StepHello)
	info, err := m.hello(ctx)
	for recoveries := 0; ; recoveries++ {
		if err == nil {
			var res *device.Result
			res, err = p.attempt(ctx, info)
			if err == nil {
				return res, nil
			}
		}
		if !p.recoverable(err) || ctx.Err() != nil {
			return p.partial(), m.fail(StepHello, err)
		}
		if recoveries == MaxRecoveries {
			return p.partial(), &device.StepError{Target: name, Step: StepRecover, Err: fmt.Errorf("giving up after %d recoveries: %w", MaxRecoveries, err)}
		}
		opts.Step(name, StepRecover)
		m.mu.Lock()
		m.recoveries++
		m.mu.Unlock()
		if info, err = p.recover(ctx, err); err != nil {
			err = m.fail(StepRecover, err)
		}
	}
}

// partial is the Result of a failed call: the chain issued, if any.
func (p *provisioning) partial() *device.Result {
	if is := p.m.Issued(); is != nil {
		return &device.Result{Issued: is, Reused: p.reused}
	}
	return nil
}

// SilentSends is how many unanswered sends Provision takes for a silent module when it can
// cycle the module's power.
const SilentSends = 3

// recoverable: a restart, or a silence when the power can be cycled.
func (p *provisioning) recoverable(err error) bool {
	return errors.Is(err, ErrModuleRestarted) || (errors.Is(err, ErrNoAnswer) && p.m.cfg.PowerCycle != nil)
}

// recover brings the module back after err and asks for its state.
func (p *provisioning) recover(ctx context.Context, cause error) (Info, error) {
	m := p.m
	if !errors.Is(cause, ErrModuleRestarted) {
		if err := m.cfg.PowerCycle(ctx); err != nil {
			return Info{}, fmt.Errorf("power cycling the silent module (%v): %w", cause, err)
		}
		// No need to wait for its BOOT event: HELLO is repeated until the module answers, and
		// a BOOT damaged by power-up noise would only cost time.
	}
	bctx, cancel := context.WithTimeout(ctx, m.cfg.BootTimeout)
	defer cancel()
	info, err := m.helloUntil(bctx)
	if err != nil {
		return info, fmt.Errorf("module did not answer HELLO within %v after %v: %w", m.cfg.BootTimeout, cause, err)
	}
	return info, nil
}

// attempt goes from the state HELLO reported to a verified chain.
func (p *provisioning) attempt(ctx context.Context, info Info) (*device.Result, error) {
	m, name := p.m, p.m.cfg.Name
	switch info.State {
	case StateProvisioned:
		if ours := p.ours(info.CertSHA256); ours != nil {
			// The commit happened (its answer may have been lost): read back and verify.
			return p.finish(ctx, ours)
		}
		if p.keyMade {
			return nil, m.fail(StepHello, fmt.Errorf("module holds a chain (SHA-256 %s) after KEYGEN force=1 erased it, and it is not the one uploaded", info.CertSHA256))
		}
		p.opts.Step(name, device.StepCheck)
		held, _, err := m.readHeld(ctx, info)
		if err != nil && p.recoverable(err) {
			return nil, err // a restart or silence while reading: recover, then read again
		}
		if err != nil && !p.opts.Reprovision {
			return nil, m.fail(device.StepCheck, fmt.Errorf("%w (DSN %s, chain SHA-256 %s, which cannot be read: %v); pass --reprovision to replace it",
				device.ErrAlreadyProvisioned, info.DSN, info.CertSHA256, err))
		}
		if err == nil {
			known, err := device.CheckHeld(ctx, p.iss, name, held, p.opts)
			if err != nil {
				return nil, err
			}
			if known != nil {
				return p.already(ctx, info, held, known)
			}
			p.replaces = held[0]
		}
		if err := p.keygen(ctx, true); err != nil {
			return nil, err
		}
	case StateBlank:
		if p.keyMade {
			return nil, m.fail(StepHello, errors.New("module reports state blank: it lost the key it made in this run"))
		}
		if err := p.keygen(ctx, false); err != nil {
			return nil, err
		}
	case StateKeyed:
		// The key survived an interrupted run (or this one): keep it unless the ledger says
		// otherwise (chainFor), PROTOCOL.md "Power loss".
	}

	issued, err := p.chainFor(ctx, info.DSN)
	if err != nil {
		return nil, err
	}
	if err := p.upload(ctx, issued.ChainPEM); err != nil {
		return nil, err
	}
	return p.finish(ctx, issued)
}

// finish records the chain as stored on the module, reads it back, verifies it and records that.
func (p *provisioning) finish(ctx context.Context, issued *pki.Issued) (*device.Result, error) {
	name := p.m.cfg.Name
	if err := device.MarkStored(ctx, p.iss, name, issued.Certificate); err != nil {
		return nil, err
	}
	if err := p.verify(ctx, issued); err != nil {
		return nil, err
	}
	if err := device.MarkVerified(ctx, p.iss, name, issued.Certificate); err != nil {
		return nil, err
	}
	return &device.Result{Issued: issued, Reused: p.reused}, nil
}

// already finishes a module that holds the chain the ledger records for its key: it proves the
// module has the leaf's key (a CSR), verifies, and advances the record.
func (p *provisioning) already(ctx context.Context, info Info, held []*x509.Certificate, known *device.Known) (*device.Result, error) {
	m, name := p.m, p.m.cfg.Name
	p.opts.Step(name, StepCSR)
	csr, err := p.readCSR(ctx, info.DSN)
	if err != nil {
		return nil, m.fail(StepCSR, err)
	}
	want := device.WithCSR(known.Issued, csr)
	p.opts.Step(name, device.StepVerify)
	if err := device.VerifyStep(name, held, want, p.iss.Roots(), p.opts.Time()); err != nil {
		return nil, err
	}
	if err := checkCN(held, info); err != nil {
		return nil, m.fail(device.StepVerify, err)
	}
	if known.State == device.StateReserved || known.State == device.StateIssued {
		if err := device.MarkStored(ctx, p.iss, name, want.Certificate); err != nil {
			return nil, err
		}
	}
	if err := device.MarkVerified(ctx, p.iss, name, want.Certificate); err != nil {
		return nil, err
	}
	return &device.Result{Issued: want, Already: true}, nil
}

// ours is this Module's chain when it has the given SHA-256.
func (p *provisioning) ours(sum string) *pki.Issued {
	if is := p.m.Issued(); is != nil && sha256Hex(is.ChainPEM) == sum {
		return is
	}
	return nil
}

func (p *provisioning) keygen(ctx context.Context, force bool) error {
	p.opts.Step(p.m.cfg.Name, StepKeyGen)
	var payload []byte
	if force {
		payload = EncodeText("force", "1")
	}
	if _, err := p.m.t.Exchange(ctx, "KEYGEN", payload); err != nil {
		return p.m.fail(StepKeyGen, err)
	}
	p.keyMade = true
	return nil
}

// readCSR has the module sign a CSR for the profile's subject, reads it back, parses it and
// checks its self-signature (proof the module holds the key); it becomes p.csr.
func (p *provisioning) readCSR(ctx context.Context, dsn string) (*x509.CertificateRequest, error) {
	subject, err := SubjectDER(p.m.cfg.Profile, dsn)
	if err != nil {
		return nil, err
	}
	txt, err := p.m.t.textAnswer(ctx, "CSR", subject)
	if err != nil {
		return nil, err
	}
	n, err := intField(txt, "CSR", "len")
	if err != nil {
		return nil, err
	}
	if n == 0 || n > maxAreaLen {
		return nil, fmt.Errorf("module announces a CSR of %d bytes", n)
	}
	der, err := p.m.readArea(ctx, "csr", n)
	if err != nil {
		return nil, err
	}
	if got, want := sha256Hex(der), strings.ToLower(txt["sha256"]); got != want {
		return nil, fmt.Errorf("CSR read back has SHA-256 %s, the module announced %s", got, want)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("module's CSR does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("module's CSR self-signature does not verify: %w", err)
	}
	p.csr = csr
	return csr, nil
}

// chainFor reads the module's CSR and returns the chain for its key: this Module's, or the
// Issuer's (the ledger's recorded chain, or a new one). A key the ledger says must not sign again
// is replaced first (KEYGEN). A second issuance for another key on one Module is refused.
func (p *provisioning) chainFor(ctx context.Context, dsn string) (*pki.Issued, error) {
	m, name := p.m, p.m.cfg.Name
	p.opts.Step(name, StepCSR)
	csr, err := p.readCSR(ctx, dsn)
	if err != nil {
		return nil, m.fail(StepCSR, err)
	}
	if prev := m.Issued(); prev != nil {
		if pki.SamePublicKey(prev.Certificate.PublicKey, csr.PublicKey) {
			return prev, nil
		}
		return nil, m.fail(device.StepIssue, fmt.Errorf("a chain was issued for this module in this run (leaf %s) for another key; refusing a second signature",
			pki.Fingerprint(prev.Certificate)))
	}
	known, err := device.Lookup(ctx, p.iss, name, StepCSR, csr.PublicKey)
	if err != nil {
		return nil, err
	}
	if !p.keyMade && device.NeedFreshKey(known, p.opts) {
		if p.replaces == nil && known.Live() && known.Issued != nil {
			p.replaces = known.Issued.Certificate
		}
		if err := p.keygen(ctx, false); err != nil {
			return nil, err
		}
		p.opts.Step(name, StepCSR)
		if csr, err = p.readCSR(ctx, dsn); err != nil {
			return nil, m.fail(StepCSR, err)
		}
		known = nil
	}
	p.opts.Step(name, device.StepIssue)
	req := device.IssueRequest{Target: name, DeviceID: dsn, Replaces: p.replaces,
		CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})}
	issued, reused, err := device.IssueChain(ctx, p.iss, req, csr.PublicKey, known)
	if err != nil {
		return nil, err
	}
	issued = device.WithCSR(issued, csr)
	m.mu.Lock()
	m.issued = issued
	m.mu.Unlock()
	p.reused = reused
	return issued, nil
}

// upload stages the chain (BEGIN, DATA from wherever the module stands) and commits it.
func (p *provisioning) upload(ctx context.Context, chain []byte) error {
	m, name := p.m, p.m.cfg.Name
	p.opts.Step(name, StepUpload)
	if len(chain) > maxChainLen {
		return m.fail(StepUpload, fmt.Errorf("chain PEM is %d bytes, the module stages at most %d", len(chain), maxChainLen))
	}
	sum := sha256Hex(chain)
	if _, err := m.t.Exchange(ctx, "BEGIN", EncodeText("len", fmt.Sprint(len(chain)), "sha256", sum)); err != nil {
		return m.fail(StepUpload, err)
	}
	chunks := newChunkSizer(m.Info().MaxChunk)
	// Each DATA either advances or names where to resume; bound the rounds so a confused module
	// cannot keep the host busy forever.
	rounds := 2*(len(chain)/chunks.floor+1) + MaxSends
	for off := 0; off < len(chain); {
		if rounds--; rounds < 0 {
			return m.fail(StepUpload, fmt.Errorf("upload makes no progress (at offset %d of %d)", off, len(chain)))
		}
		f, _, err := m.t.exchangeChunk(ctx, chunks, "DATA", func(size int) []byte {
			return EncodeChunk(uint32(off), chain[off:min(off+size, len(chain))])
		})
		var txt Text
		if err == nil {
			if txt, err = ParseText(f.Payload); err != nil {
				err = fmt.Errorf("module's answer to DATA: %w", err)
			}
		}
		var me *ModuleError
		if errors.As(err, &me) && me.Code == "offset" {
			txt, err = me.Text, nil // resend from where the module stands
		}
		if err != nil {
			return m.fail(StepUpload, fmt.Errorf("DATA at offset %d: %w", off, err))
		}
		next, err := intField(txt, "DATA", "next")
		if err != nil {
			return m.fail(StepUpload, err)
		}
		if next > len(chain) {
			return m.fail(StepUpload, fmt.Errorf("module expects offset %d, past the chain's %d bytes", next, len(chain)))
		}
		off = next
	}

	p.opts.Step(name, StepCommit)
	txt, err := m.t.textAnswer(ctx, "COMMIT", nil)
	if err != nil {
		return m.fail(StepCommit, err)
	}
	if got := strings.ToLower(txt["sha256"]); got != sum {
		return m.fail(StepCommit, fmt.Errorf("module committed a chain with SHA-256 %q, uploaded %s", got, sum))
	}
	return nil
}

// verify reads the stored chain back and checks it: HELLO's state and digest, device.Verify
// against want (byte for byte, leaf key = the CSR's key, path to the roots), CN = DSN.
func (p *provisioning) verify(ctx context.Context, want *pki.Issued) error {
	m, name := p.m, p.m.cfg.Name
	p.opts.Step(name, device.StepReadBack)
	info, err := m.hello(ctx)
	if err != nil {
		return m.fail(StepHello, err)
	}
	chain, _, err := m.readHeld(ctx, info)
	if err != nil {
		return err
	}
	p.opts.Step(name, device.StepVerify)
	if p.csr == nil {
		// Straight into read-back (a commit of an earlier attempt): ask the module for its key.
		if _, err := p.readCSR(ctx, info.DSN); err != nil {
			return m.fail(device.StepVerify, fmt.Errorf("asking for a CSR to learn the module's key: %w", err))
		}
	}
	if err := device.VerifyStep(name, chain, device.WithCSR(want, p.csr), p.iss.Roots(), p.opts.Time()); err != nil {
		return err
	}
	if err := checkCN(chain, info); err != nil {
		return m.fail(device.StepVerify, err)
	}
	return nil
}

// SubjectDER is the DER RDNSequence the CSR must carry: the profile's subject fields in order,
// CN set to the module's DSN. Like openssl with its default string_mask (utf8only), values are
// UTF8String except the attributes openssl keeps PrintableString (C, serialNumber, dnQualifier).
func SubjectDER(profile *pki.Profile, dsn string) ([]byte, error) {
	var rdns pkix.RDNSequence
	for _, f := range profile.Subject {
		value := f.Value
		switch {
		case f.OID.Equal(oidCommonName):
			value = dsn
		case f.PerDevice:
			return nil, fmt.Errorf("profile field %s is per device, but the module only supplies its DSN (as CN)", f.Name)
		}
		if value == "" {
			return nil, fmt.Errorf("profile field %s has no value", f.Name)
		}
		tag := asn1.TagUTF8String
		if isPrintableAttr(f.OID) {
			tag = asn1.TagPrintableString
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: f.OID, Value: asn1.RawValue{Tag: tag, Bytes: []byte(value)}}})
	}
	if len(rdns) == 0 {
		return nil, errors.New("profile has no subject fields")
	}
	return asn1.Marshal(rdns)
}

var (
	oidCommonName  = asn1.ObjectIdentifier{2, 5, 4, 3}
	printableAttrs = []asn1.ObjectIdentifier{{2, 5, 4, 6}, {2, 5, 4, 5}, {2, 5, 4, 46}} // C, serialNumber, dnQualifier
)

func isPrintableAttr(oid asn1.ObjectIdentifier) bool {
	for _, o := range printableAttrs {
		if o.Equal(oid) {
			return true
		}
	}
	return false
}

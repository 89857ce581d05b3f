package ack

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"hilbench/harness/pki"
)

// MaxRecoveries is how many restarts or silences one Provision recovers from.
const MaxRecoveries = 3

// Options change how Provision treats a module.
type Options struct {
	// Reprovision replaces an existing identity (KEYGEN force=1). Off by default: the existing
	// chain may belong to a module already registered in the field.
	Reprovision bool
	// Roots are the trust anchors the read-back chain must verify to (nil: the DAK certificate).
	Roots []*x509.Certificate
	// Now is the verification time (default time.Now).
	Now func() time.Time
	// Progress, if set, is told each step as it starts.
	Progress func(target, step string)
	// Profile gives the subject the CSR must carry ([dn], CN set to the module's DSN). Required.
	Profile *pki.Profile
	// Previous is a chain issued in an earlier run (the station's device record): uploaded again,
	// without a new signature, when its leaf holds the module's key.
	Previous *pki.Issued
	// PowerCycle, if set, is used when the module falls silent: Provision cycles its power once
	// per silence and continues from the state it reports.
	PowerCycle func(ctx context.Context) error
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) step(target, step string) {
	if o.Progress != nil {
		o.Progress(target, step)
	}
}

// provisioning is one Provision call's memory across recoveries.
type provisioning struct {
	m       *Module
	issue   IssueFunc
	opts    Options
	keyMade bool // a KEYGEN of this call was answered OK
	csrKey  any  // the module's public key, from its CSR
}

// Provision runs the native cycle of PROTOCOL.md: HELLO, KEYGEN (unless the module keeps a key
// from an interrupted run), CSR, issue (at most once per Module; a chain already issued for the
// module's key is reused), upload, COMMIT, read back, verify. A restart or (with PowerCycle) a
// silence is recovered from up to MaxRecoveries times, continuing from the state HELLO reports.
func (m *Module) Provision(ctx context.Context, issue IssueFunc, opts Options) (*pki.Issued, error) {
	m.op.Lock()
	defer m.op.Unlock()
	if opts.Profile == nil {
		return nil, m.fail(StepCSR, errors.New("no product profile: the CSR subject comes from its [dn] section"))
	}
	p := &provisioning{m: m, issue: issue, opts: opts}
	name := m.cfg.Name
	if opts.PowerCycle != nil {
		// A module that answers nothing three times running has lost power or hung: cycling
		// its power beats waiting out every retransmission.
		m.t.SetSilentAfter(SilentSends)
		defer m.t.SetSilentAfter(0)
	}

	opts.step(name, StepHello)
	info, err := m.hello(ctx)
	for recoveries := 0; ; recoveries++ {
		if err == nil {
			var issued *pki.Issued
			issued, err = p.attempt(ctx, info)
			if err == nil {
				return issued, nil
			}
		}
		if !p.recoverable(err) || ctx.Err() != nil {
			return m.Issued(), m.fail(StepHello, err)
		}
		if recoveries == MaxRecoveries {
			return m.Issued(), &StepError{Target: name, Step: StepRecover, Err: fmt.Errorf("giving up after %d recoveries: %w", MaxRecoveries, err)}
		}
		opts.step(name, StepRecover)
		m.mu.Lock()
		m.recoveries++
		m.mu.Unlock()
		if info, err = p.recover(ctx, err); err != nil {
			err = m.fail(StepRecover, err)
		}
	}
}

// SilentSends is how many unanswered sends Provision takes for a silent module when it can
// cycle the module's power.
const SilentSends = 3

// recoverable: a restart, or a silence when the power can be cycled.
func (p *provisioning) recoverable(err error) bool {
	return errors.Is(err, ErrModuleRestarted) || (errors.Is(err, ErrNoAnswer) && p.opts.PowerCycle != nil)
}

// recover brings the module back after err and asks for its state.
func (p *provisioning) recover(ctx context.Context, cause error) (Info, error) {
	m := p.m
	if !errors.Is(cause, ErrModuleRestarted) {
		if err := p.opts.PowerCycle(ctx); err != nil {
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
func (p *provisioning) attempt(ctx context.Context, info Info) (*pki.Issued, error) {
	m, name := p.m, p.m.cfg.Name
	switch info.State {
	case StateProvisioned:
		if ours := p.ours(info.CertSHA256); ours != nil {
			// The commit happened (its answer may have been lost): read back and verify.
			return ours, p.readBack(ctx, ours.ChainPEM)
		}
		if !p.opts.Reprovision {
			return nil, m.fail(StepHello, fmt.Errorf("%w (DSN %s, chain SHA-256 %s); pass --reprovision to replace it",
				ErrAlreadyProvisioned, info.DSN, info.CertSHA256))
		}
		if p.keyMade {
			return nil, m.fail(StepHello, fmt.Errorf("module holds a chain (SHA-256 %s) after KEYGEN force=1 erased it, and it is not the one uploaded", info.CertSHA256))
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
		// The key survived an interrupted run (or this one): keep it, PROTOCOL.md "Power loss".
	}

	p.opts.step(name, StepCSR)
	csrDER, err := p.csr(ctx, info.DSN)
	if err != nil {
		return nil, m.fail(StepCSR, err)
	}
	issued, err := p.chainFor(ctx, csrDER)
	if err != nil {
		return nil, err
	}
	if err := p.upload(ctx, issued.ChainPEM); err != nil {
		return issued, err
	}
	return issued, p.readBack(ctx, issued.ChainPEM)
}

// ours is the chain with the given SHA-256 among those issued for this module (this run or
// opts.Previous), if any.
func (p *provisioning) ours(sum string) *pki.Issued {
	cands := []*pki.Issued{p.m.Issued()}
	if !p.opts.Reprovision { // re-provisioning replaces an earlier run's chain, never keeps it
		cands = append(cands, p.opts.Previous)
	}
	for _, iss := range cands {
		if iss != nil && sha256Hex(iss.ChainPEM) == sum {
			p.m.mu.Lock()
			p.m.issued = iss
			p.m.mu.Unlock()
			return iss
		}
	}
	return nil
}

func (p *provisioning) keygen(ctx context.Context, force bool) error {
	p.opts.step(p.m.cfg.Name, StepKeyGen)
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

// csr has the module sign a CSR for the profile's subject and reads it back; it returns its DER.
func (p *provisioning) csr(ctx context.Context, dsn string) ([]byte, error) {
	subject, err := SubjectDER(p.opts.Profile, dsn)
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
	return der, nil
}

// chainFor returns the chain for the CSR's key: the one issued in this run, opts.Previous, or a
// new one from issue. A second issuance for one Module is refused.
func (p *provisioning) chainFor(ctx context.Context, csrDER []byte) (*pki.Issued, error) {
	m, name := p.m, p.m.cfg.Name
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, m.fail(StepCSR, fmt.Errorf("module's CSR does not parse: %w", err))
	}
	p.csrKey = csr.PublicKey
	for _, prev := range []*pki.Issued{m.Issued(), p.opts.Previous} {
		if prev != nil && prev.Certificate != nil && pki.SamePublicKey(prev.Certificate.PublicKey, csr.PublicKey) {
			// Proof the module holds the key before the chain goes back to it.
			if err := csr.CheckSignature(); err != nil {
				return nil, m.fail(StepCSR, fmt.Errorf("module's CSR self-signature does not verify: %w", err))
			}
			m.mu.Lock()
			m.issued = prev
			m.mu.Unlock()
			return prev, nil
		}
	}
	if prev := m.Issued(); prev != nil {
		return nil, m.fail(StepIssue, fmt.Errorf("a chain was issued for this module in this run (leaf %s) for another key; refusing a second signature",
			pki.Fingerprint(prev.Certificate)))
	}
	if p.issue == nil {
		return nil, m.fail(StepIssue, errors.New("no issuer given"))
	}
	p.opts.step(name, StepIssue)
	issued, err := p.issue(ctx, name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	if err != nil {
		return nil, m.fail(StepIssue, err)
	}
	if issued == nil || issued.Certificate == nil || len(issued.ChainPEM) == 0 {
		return nil, m.fail(StepIssue, errors.New("issuer returned no chain"))
	}
	m.mu.Lock()
	m.issued = issued
	m.mu.Unlock()
	if !pki.SamePublicKey(issued.Certificate.PublicKey, csr.PublicKey) {
		return nil, m.fail(StepIssue, errors.New("issued leaf does not hold the key of the module's CSR"))
	}
	return issued, nil
}

// upload stages the chain (BEGIN, DATA from wherever the module stands) and commits it.
func (p *provisioning) upload(ctx context.Context, chain []byte) error {
	m, name := p.m, p.m.cfg.Name
	p.opts.step(name, StepUpload)
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

	p.opts.step(name, StepCommit)
	txt, err := m.t.textAnswer(ctx, "COMMIT", nil)
	if err != nil {
		return m.fail(StepCommit, err)
	}
	if got := strings.ToLower(txt["sha256"]); got != sum {
		return m.fail(StepCommit, fmt.Errorf("module committed a chain with SHA-256 %q, uploaded %s", got, sum))
	}
	return nil
}

// readBack reads the stored chain and checks it: byte-identical to the upload, leaf key = the
// CSR's key, a valid path to the roots.
func (p *provisioning) readBack(ctx context.Context, want []byte) error {
	m, name := p.m, p.m.cfg.Name
	p.opts.step(name, StepReadBack)
	got, err := m.readArea(ctx, "cert", -1)
	if err != nil {
		return m.fail(StepReadBack, err)
	}
	if !bytes.Equal(got, want) {
		return m.fail(StepReadBack, fmt.Errorf("%w: %d bytes with SHA-256 %s, uploaded %d bytes with SHA-256 %s",
			ErrChainMismatch, len(got), sha256Hex(got), len(want), sha256Hex(want)))
	}
	p.opts.step(name, StepVerify)
	chain, err := pki.ParseChainPEM(got)
	if err != nil {
		return m.fail(StepVerify, err)
	}
	if p.csrKey == nil {
		// Straight into read-back (a commit of an earlier attempt): ask the module for its key.
		der, err := p.csr(ctx, m.Info().DSN)
		if err != nil {
			return m.fail(StepVerify, fmt.Errorf("asking for a CSR to learn the module's key: %w", err))
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return m.fail(StepVerify, fmt.Errorf("module's CSR does not parse: %w", err))
		}
		p.csrKey = csr.PublicKey
	}
	if !pki.SamePublicKey(chain[0].PublicKey, p.csrKey) {
		return m.fail(StepVerify, errors.New("leaf public key is not the key of the module's CSR"))
	}
	if err := pki.VerifyChain(chain, p.opts.Roots, p.opts.now()); err != nil {
		return m.fail(StepVerify, err)
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

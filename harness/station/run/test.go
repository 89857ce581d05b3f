package run

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"hilbench/harness/atomicfile"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/plan"
	"hilbench/harness/station/web"
	"hilbench/harness/testrecord"
)

// dutTest is one DUT's pass through the plan.
type dutTest struct {
	r    *Runner
	s    *slot
	d    device.Device
	rec  *testrecord.Record
	dir  string
	want *pki.Issued         // the identity the ledger holds for the DUT (after provision or the first verify)
	held []*x509.Certificate // the chain read back first: every later read must equal it
}

// test runs the plan on the DUT in slot s and records it; it returns the DUT's id. It never
// returns an error: what went wrong is in the record.
func (r *Runner) test(s *slot) string {
	started := r.cfg.Now()
	id := r.newID(s.t.Name, started)
	dir := r.RecordDir(id)
	rec := testrecord.New(id, "", r.cfg.Station, s.t.Name, r.currentOperator(), r.cfg.RunID, r.cfg.Plan.Name, started)
	r.setState(s, func(st *web.SlotState) {
		*st = web.SlotState{Name: s.t.Name, State: web.StateRunning, Phase: "open", Started: started, RecordID: id}
		if s.stopReq {
			st.State = web.StateStopping
		}
	})
	tt := &dutTest{r: r, s: s, rec: rec, dir: dir}
	tt.run()
	r.finished(rec)
	r.setState(s, func(st *web.SlotState) {
		st.State = strings.ToLower(rec.Outcome)
		st.DUT, st.Phase, st.Ended = rec.DUTID, "", rec.EndedAt
		st.FailedPhase, st.Message = rec.FailedPhase, rec.Message
	})
	return rec.DUTID
}

func (t *dutTest) run() {
	r, rec := t.r, t.rec
	ctx := r.abort
	var err error
	if err = os.MkdirAll(t.dir, 0o755); err == nil {
		t.d, err = r.cfg.Open(ctx, t.s.t, t.dir)
	}
	if err != nil {
		t.begin(ctx)
		t.end(testrecord.Error, "open", err.Error())
		return
	}
	defer func() {
		t.d.Close()
		t.attachTranscript()
		t.write()
	}()
	// The DUT's id first: the ledger's record of the test names it before any phase acts.
	dutPhase := t.dutID(ctx)
	if err := t.begin(ctx); err != nil {
		t.end(testrecord.Error, "record", err.Error())
		return
	}
	if dutPhase != nil {
		rec.Phases = append(rec.Phases, *dutPhase)
		if dutPhase.Outcome != testrecord.Pass {
			t.end(dutPhase.Outcome, dutPhase.Name, dutPhase.Message)
			return
		}
	}
	var first *testrecord.Phase
	for i, ph := range r.cfg.Plan.Phases {
		if first != nil && !r.cfg.Plan.Phases[i-1].ContinueOnFailure {
			break
		}
		r.setState(t.s, func(st *web.SlotState) { st.Phase = ph.Name })
		res := t.phase(ctx, ph)
		rec.Phases = append(rec.Phases, res)
		t.write()
		if res.Outcome != testrecord.Pass && first == nil {
			first = &rec.Phases[len(rec.Phases)-1]
		}
		if res.Outcome != testrecord.Pass && !ph.ContinueOnFailure {
			// Later phases are listed as not run, so the record shows the whole plan.
			for _, rest := range r.cfg.Plan.Phases[i+1:] {
				now := r.cfg.Now().UTC()
				rec.Phases = append(rec.Phases, testrecord.Phase{Name: rest.Name, Type: rest.Type, Outcome: testrecord.Skip,
					StartedAt: now, EndedAt: now, Message: "not run: phase " + ph.Name + " failed"})
			}
			break
		}
		if res.Outcome == testrecord.Aborted {
			break
		}
	}
	if first != nil {
		t.end(first.Outcome, first.Name, first.Message)
		return
	}
	t.end(testrecord.Pass, "", "")
}

// dutID reads the DUT's serial: the device's own report, else the plan's command.
func (t *dutTest) dutID(ctx context.Context) *testrecord.Phase {
	pl := t.r.cfg.Plan
	idr, isID := t.d.(device.Identifier)
	if !isID && pl.DUTID == nil {
		return nil
	}
	ph := plan.Phase{Name: "dut_id", Type: "dut_id", Timeout: 30 * time.Second, Retries: 1}
	res := t.attempts(ctx, ph, func(ctx context.Context, p *testrecord.Phase) error {
		if isID {
			id, err := idr.DeviceID(ctx)
			if err != nil {
				return err
			}
			t.rec.DUTID = id
			return nil
		}
		out, err := t.shell(ctx, pl.DUTID.Command)
		if err != nil {
			return err
		}
		id, ok := pl.DUTID.Capture(out)
		if !ok || strings.TrimSpace(id) == "" {
			return failf("%q printed no serial matching %s: %s", pl.DUTID.Command, pl.DUTID.Regexp, lastLine(out))
		}
		t.rec.DUTID = strings.TrimSpace(id)
		return nil
	})
	if t.rec.DUTID != "" {
		t.r.setState(t.s, func(st *web.SlotState) { st.DUT = t.rec.DUTID })
	}
	return &res
}

// begin records the test RUNNING in the ledger and on disk, before any phase acts on the DUT.
func (t *dutTest) begin(ctx context.Context) error {
	rec := t.rec
	b, _ := rec.JSON()
	err := t.r.cfg.Ledger.BeginTest(context.WithoutCancel(ctx), ledger.TestRun{
		ID: rec.ID, DUTID: rec.DUTID, Station: rec.Station, Slot: rec.Slot, Operator: rec.Operator, RunID: rec.RunID,
		StartedAt: rec.StartedAt, Record: b,
	})
	t.write()
	return err
}

// end sets the outcome and records it in the ledger (and on disk, by run's deferred write).
func (t *dutTest) end(outcome, failedPhase, msg string) {
	rec := t.rec
	rec.Outcome = outcome
	if outcome != testrecord.Pass {
		rec.FailedPhase = failedPhase
		rec.Message = msg
		if rec.Message == "" {
			rec.Message = strings.ToLower(outcome)
		}
	}
	rec.EndedAt = t.r.cfg.Now().UTC()
	t.attachTranscript()
	b, err := rec.JSON()
	if err == nil {
		// The ledger's end is not interrupted by an abort: the outcome must land.
		err = t.r.cfg.Ledger.EndTest(context.Background(), rec.ID, ledger.TestOutcome(outcome), rec.EndedAt, b)
	}
	if err != nil {
		t.r.cfg.Logf("slot %s: recording test %s: %v", rec.Slot, rec.ID, err)
	}
	t.write()
}

func (t *dutTest) write() {
	if err := t.rec.WriteFile(filepath.Join(t.dir, "record.json")); err != nil {
		t.r.cfg.Logf("slot %s: writing record %s: %v", t.rec.Slot, t.rec.ID, err)
	}
}

func (t *dutTest) attachTranscript() {
	path := filepath.Join(t.dir, t.s.t.Name+".transcript")
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	for i, a := range t.rec.Attachments {
		if a.Name == "transcript" {
			t.rec.Attachments[i].Size = st.Size()
			return
		}
	}
	t.rec.Attachments = append(t.rec.Attachments, testrecord.Attachment{Name: "transcript", Path: path, MediaType: "text/plain", Size: st.Size()})
}

// failure is a phase failure the DUT caused (FAIL); other errors are ERROR.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, a ...any) error { return &failure{fmt.Sprintf(format, a...)} }

// outcomeOf classifies a phase's error: the DUT did not meet the plan (FAIL), or the test could
// not judge it (ERROR: a DUT that stopped answering, the signer, the ledger).
func outcomeOf(err error) string {
	var f *failure
	switch {
	case errors.As(err, &f):
		return testrecord.Fail
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return testrecord.Error
	case errors.Is(err, console.ErrNoStatus):
		// The command's end never came: the DUT restarted or was pulled under it.
		return testrecord.Error
	}
	switch device.StepOf(err) {
	case device.StepIssue, device.StepRecord, device.StepOpen:
		return testrecord.Error
	}
	for _, e := range []error{device.ErrAlreadyProvisioned, device.ErrChainMismatch, device.ErrNoChain} {
		if errors.Is(err, e) {
			return testrecord.Fail
		}
	}
	if strings.Contains(err.Error(), "prompt never came") || strings.Contains(err.Error(), "timed out") {
		return testrecord.Error
	}
	return testrecord.Fail
}

// attempts runs fn up to 1+ph.Retries times, each under the phase's timeout.
func (t *dutTest) attempts(ctx context.Context, ph plan.Phase, fn func(ctx context.Context, p *testrecord.Phase) error) testrecord.Phase {
	p := testrecord.Phase{Name: ph.Name, Type: ph.Type, StartedAt: t.r.cfg.Now().UTC()}
	var err error
	for p.Attempts < 1+ph.Retries {
		p.Attempts++
		p.Measurements = nil
		actx, cancel := context.WithTimeout(ctx, ph.Timeout)
		err = fn(actx, &p)
		if err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("phase %s timed out after %s: %w", ph.Name, ph.Timeout, err)
		}
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	p.EndedAt = t.r.cfg.Now().UTC()
	p.DurationMS = p.EndedAt.Sub(p.StartedAt).Milliseconds()
	switch {
	case ctx.Err() != nil:
		p.Outcome, p.Message = testrecord.Aborted, "aborted by the operator (station stopped)"
	case err == nil:
		p.Outcome = testrecord.Pass
	default:
		p.Outcome, p.Message = outcomeOf(err), err.Error()
		p.Step = device.StepOf(err)
	}
	return p
}

// phase runs one plan phase.
func (t *dutTest) phase(ctx context.Context, ph plan.Phase) testrecord.Phase {
	return t.attempts(ctx, ph, func(ctx context.Context, p *testrecord.Phase) error {
		switch ph.Type {
		case plan.TypeFlash:
			return t.flash(ctx, ph, p)
		case plan.TypeProvision:
			return t.provision(ctx, ph, p)
		case plan.TypeVerify:
			return t.verify(ctx)
		case plan.TypeReboot:
			if err := t.d.Reboot(ctx); err != nil {
				return device.Fail(t.d.Name(), device.StepReboot, err)
			}
			return t.verify(ctx)
		case plan.TypeFactoryReset:
			if err := t.d.FactoryReset(ctx); err != nil {
				return device.Fail(t.d.Name(), device.StepReset, err)
			}
			return t.verify(ctx)
		case plan.TypePowerCycle:
			pc, ok := t.d.(device.PowerCycler)
			if !ok {
				return fmt.Errorf("%w: %s cannot be power cycled", device.ErrUnsupported, t.d.Name())
			}
			if err := pc.PowerCycle(ctx); err != nil {
				return device.Fail(t.d.Name(), device.StepPower, err)
			}
			return t.verify(ctx)
		case plan.TypeShell:
			return t.shellPhase(ctx, ph, p)
		}
		return fmt.Errorf("phase type %q has no runner", ph.Type)
	})
}

func (t *dutTest) flash(ctx context.Context, ph plan.Phase, p *testrecord.Phase) error {
	fl, ok := t.d.(device.Flasher)
	if !ok {
		return fmt.Errorf("%w: %s cannot be flashed", device.ErrUnsupported, t.d.Name())
	}
	img, err := flash.Load(ph.Image, "")
	if err != nil {
		return err
	}
	res, err := fl.Flash(ctx, img, device.FlashOptions{ExpectVersion: ph.ExpectVersion})
	if err != nil {
		return err
	}
	p.Facts = map[string]string{"version": res.Version, "digest": res.Digest, "attempts": fmt.Sprint(res.Attempts)}
	return nil
}

func (t *dutTest) provision(ctx context.Context, ph plan.Phase, p *testrecord.Phase) error {
	res, err := t.d.Provision(ctx, t.r.cfg.Issuer, device.Options{Reprovision: ph.AlreadyProvisioned == plan.AlreadyReprovision})
	if res != nil && res.Issued != nil && res.Issued.Certificate != nil {
		t.identity(res.Issued, res.Already, res.Reused)
		if len(res.Facts) > 0 {
			p.Facts = res.Facts
		}
	}
	if errors.Is(err, device.ErrAlreadyProvisioned) {
		return failf("%v (the plan says refuse: the identity may be registered already)", err)
	}
	return err
}

// identity fills the record's identity and writes the chain beside it.
func (t *dutTest) identity(is *pki.Issued, already, reused bool) {
	t.want = is
	c := is.Certificate
	id := &testrecord.Identity{
		CertificateSerial: c.SerialNumber.Text(16),
		Fingerprint:       pki.Fingerprint(c),
		Subject:           c.Subject.String(),
		NotAfter:          c.NotAfter.UTC(),
		DAKFingerprint:    t.r.cfg.DAKFingerprint,
		Attestation:       t.r.cfg.Signer,
		Already:           already,
		Reused:            reused,
	}
	if len(is.Chain) > 1 {
		id.DAK = is.Chain[1].Subject.String()
		if id.DAKFingerprint == "" {
			id.DAKFingerprint = pki.Fingerprint(is.Chain[1])
		}
	}
	id.ControlLogPublicKey = pki.ControlLogPublicKey(c)
	if k, err := pki.CompressedPublicKey(c.PublicKey); err == nil {
		id.BarcodePublicKey = k
	}
	t.rec.Identity = id
	chainPEM := is.ChainPEM
	if len(chainPEM) == 0 {
		for _, cert := range is.Chain {
			chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
		}
	}
	path := filepath.Join(t.dir, "chain.pem")
	if err := atomicfile.Write(path, chainPEM, 0o644); err == nil {
		for _, a := range t.rec.Attachments {
			if a.Name == "chain" {
				return
			}
		}
		t.rec.Attachments = append(t.rec.Attachments, testrecord.Attachment{Name: "chain", Path: path,
			MediaType: "application/x-pem-file", Size: int64(len(chainPEM))})
	}
}

// verify reads the chain back and checks it against the ledger's record of the device key; after
// a restart it must be the chain held before, byte for byte.
func (t *dutTest) verify(ctx context.Context) error {
	name := t.d.Name()
	chain, err := t.d.ReadChain(ctx)
	if err != nil {
		return device.Fail(name, device.StepReadBack, err)
	}
	if t.held == nil {
		t.held = chain
	} else if !device.SameChain(chain, t.held) {
		return failf("%v: the device holds certificate %s now, %s before", device.ErrChainMismatch, pki.Fingerprint(chain[0]), pki.Fingerprint(t.held[0]))
	}
	if t.want == nil {
		k, err := t.r.cfg.Issuer.Lookup(ctx, chain[0].PublicKey)
		if err != nil {
			return device.Fail(name, device.StepRecord, fmt.Errorf("ledger lookup of the device key: %w", err))
		}
		switch {
		case k.Live() && k.Issued != nil:
			t.identity(k.Issued, true, false)
		case k != nil && !k.Live():
			return failf("the ledger records certificate %s as replaced: the device holds an identity that is no longer its own", pki.Fingerprint(chain[0]))
		default:
			return failf("the ledger holds no record of the device's key (certificate %s)", pki.Fingerprint(chain[0]))
		}
	}
	if err := device.VerifyStep(name, chain, t.want, t.r.cfg.Issuer.Roots(), t.r.cfg.Now()); err != nil {
		return failf("%v", err)
	}
	return nil
}

// shell runs a command on the DUT's console; a non-zero exit status fails.
func (t *dutTest) shell(ctx context.Context, cmd string) (string, error) {
	c, ok := t.d.(interface{ Console() *console.Console })
	if !ok {
		return "", fmt.Errorf("%w: %s has no shell console", device.ErrUnsupported, t.d.Name())
	}
	if sy, ok := t.d.(interface{ Sync(context.Context) error }); ok {
		if err := sy.Sync(ctx); err != nil {
			return "", err
		}
	}
	res, err := c.Console().Shell(ctx, cmd)
	res.Output = csi.ReplaceAllString(res.Output, "")
	if err != nil {
		return res.Output, err
	}
	if res.Status != 0 {
		return res.Output, failf("%q exited with status %d: %s", cmd, res.Status, lastLine(res.Output))
	}
	return res.Output, nil
}

func (t *dutTest) shellPhase(ctx context.Context, ph plan.Phase, p *testrecord.Phase) error {
	out, err := t.shell(ctx, ph.Command)
	if err != nil {
		return err
	}
	m := ph.Measurement
	if m == nil {
		return nil
	}
	v, ok := m.Capture(out)
	mr := testrecord.Measurement{Name: m.Name, Value: v, Min: m.Min, Max: m.Max, Equals: m.Equals, Units: m.Units, Outcome: testrecord.Pass}
	why := ""
	if !ok {
		why = fmt.Sprintf("%s: %q printed nothing matching %s: %s", m.Name, ph.Command, m.Regexp, lastLine(out))
	} else {
		why = m.Judge(v)
	}
	if why != "" {
		mr.Outcome = testrecord.Fail
	}
	p.Measurements = append(p.Measurements, mr)
	if why != "" {
		return failf("%s", why)
	}
	return nil
}

// csi matches terminal control sequences: a cursor-position report that reaches busybox late
// comes back echoed in a command's output ("\x1b[1;1R"), and is no part of a measurement.
var csi = regexp.MustCompile(`\x1b\[[0-9;?]*[@-~]`)

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.TrimSpace(s)
}

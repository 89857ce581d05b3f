package soak

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/power"
)

// maxReads bounds the reads of one identity check. A noisy console may spoil a read (about one
// in five at a byte error rate of 1e-4 over a 2 KiB chain); two reads that agree are the device's
// storage, not the line.
const maxReads = 8

// noneReads is how many reads in a row must find no chain before the chain counts as lost: noise
// can spoil the BEGIN line of one read, not of three.
const noneReads = 3

// runner soaks one target.
type runner struct {
	s   *soak
	t   Target
	idx int
	tr  *TargetReport
	rng *rand.Rand

	d    device.Device
	want *pki.Issued // the chain the ledger issued for the device
	key  string      // ledger key of the device (SHA-256 of its public key)
	sigs int         // signatures beyond the first already counted as double signatures
	// noReenum: the simulator said it cannot re-enumerate its port (a family without the fault).
	noReenum bool
}

func (r *runner) run(ctx context.Context) {
	defer r.s.cycleDone(r.idx, r.s.cfg.Cycles)
	defer func() {
		if r.d != nil {
			r.d.Close()
		}
	}()
	if r.t.Sim != nil && r.s.cfg.has(FaultNoise) {
		if err := r.t.Sim.Noise(ctx, r.s.cfg.NoiseRate); err != nil {
			r.stop(0, StepProvision, KindProvision, fmt.Errorf("asking the simulator for noise: %w", err))
			return
		}
	}
	if !r.provision(ctx) {
		return
	}
	for cycle := 1; cycle <= r.s.cfg.Cycles; cycle++ {
		if ctx.Err() != nil {
			return
		}
		for _, st := range r.steps() {
			if !r.step(ctx, cycle, st) {
				return // the identity is gone: nothing more to learn from this target
			}
			if ctx.Err() != nil {
				return
			}
		}
		r.s.checkLedger(ctx, r.t.Ledger, r.t.Name, cycle)
		r.s.rep.cycleDone(r.tr, cycle)
		r.s.cycleDone(r.idx, cycle)
	}
}

// steps are the steps of one cycle for this target.
func (r *runner) steps() []string {
	sim := r.t.Sim != nil
	destructive := sim || r.s.cfg.Destructive
	list := []string{StepVerify, StepReboot}
	if destructive {
		list = append(list, StepReset)
		if r.s.cfg.Image != nil {
			if _, ok := r.d.(device.Flasher); ok {
				list = append(list, StepReflash)
			}
		}
	}
	if _, ok := r.d.(device.PowerCycler); ok && r.t.Power != nil {
		list = append(list, StepPowerCycle)
	}
	if destructive && r.s.cfg.has(FaultPowerCut) && r.t.Power != nil {
		list = append(list, StepPowerCut)
	}
	if sim && r.s.cfg.has(FaultReenumerate) && !r.noReenum {
		list = append(list, StepReenum)
	}
	return list
}

// stop records a failure that ends the target's soak.
func (r *runner) stop(cycle int, step, kind string, err error) {
	f := Failure{Kind: kind, Target: r.t.Name, Cycle: cycle, Step: step, Error: err.Error(), Transcript: excerpt(r.t.Transcript)}
	r.s.rep.setStopped(r.tr, fmt.Sprintf("%s at cycle %d, step %s", kind, cycle, step))
	if kind == KindProvision {
		r.s.rep.stepFailure(r.tr, step, cycle, f)
		return
	}
	r.s.rep.identityFailure(f)
}

func (r *runner) open(ctx context.Context) error {
	if r.d != nil {
		return nil
	}
	d, err := r.t.Open(ctx)
	if err != nil {
		return err
	}
	r.d = d
	return nil
}

// recover brings a target back after an ordinary failure: power on (a cut may have left it off)
// or, from the second retry on, a power cycle (a device that hangs), and a fresh link and driver.
func (r *runner) recover(ctx context.Context, attempt int) {
	if r.d != nil {
		r.d.Close()
		r.d = nil
	}
	if r.t.Power == nil {
		return
	}
	if attempt > 1 {
		r.s.rep.count(r.tr, "recovery_power_cycles")
		if err := r.t.Power.Off(ctx); err == nil {
			sleepCtx(ctx, r.offTime())
		}
	}
	_ = r.t.Power.On(ctx)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (r *runner) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.s.cfg.StepTimeout)
}

// provisionAttempts is the least number of provisioning attempts: it happens once per target,
// under a power cut, and a driver's own read-back over a noisy console is not re-read.
const provisionAttempts = 5

// provision gives the target its identity once (retried as any step, at least provisionAttempts
// times in all), with a power cut armed at a random byte of the certificate upload or write when
// power cuts are injected.
func (r *runner) provision(ctx context.Context) bool {
	iss := r.t.Issuer
	var lastErr error
	for attempt := 0; attempt < max(r.s.cfg.Retries+1, provisionAttempts); attempt++ {
		if attempt > 0 {
			r.s.rep.addRetry(r.tr, StepProvision)
			r.recover(ctx, attempt)
		}
		start := time.Now()
		err := r.open(ctx)
		if err == nil && attempt == 0 && r.t.Sim != nil && r.s.cfg.has(FaultPowerCut) {
			phase, at := r.provisionCut()
			err = r.t.Sim.Cut(ctx, phase, at, r.offTime())
			r.s.rep.setFact(r.tr, "provision_cut", fmt.Sprintf("%s byte %d", phase, at))
		}
		var res *device.Result
		if err == nil {
			sctx, cancel := r.timeout(ctx)
			res, err = r.d.Provision(sctx, iss, device.Options{})
			cancel()
		}
		if r.t.Sim != nil && r.s.cfg.has(FaultPowerCut) {
			r.disarm(ctx)
		}
		if err == nil {
			if res != nil && res.Issued != nil {
				r.want = res.Issued
			}
			err = r.learn(ctx)
		}
		if err == nil {
			r.s.rep.stepRun(r.tr, StepProvision, 0, time.Since(start), attempt > 0)
			if r.s.cfg.AfterStep != nil {
				r.s.cfg.AfterStep(r.t.Name, 0, StepProvision)
			}
			return true
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	r.stop(0, StepProvision, KindProvision, lastErr)
	return false
}

// provisionCut picks where the provisioning's power cut falls: a byte of the certificate upload
// (both families) or of the certificate write (ACK modules).
func (r *runner) provisionCut() (string, int) {
	if r.t.Family == "ack" && r.rng.IntN(2) == 0 {
		return "commit", r.rng.IntN(1500)
	}
	return "upload", r.rng.IntN(3000)
}

// disarm clears a cut that did not fire, keeping the noise on.
func (r *runner) disarm(ctx context.Context) {
	_ = r.t.Sim.Clear(ctx)
	if r.s.cfg.has(FaultNoise) {
		_ = r.t.Sim.Noise(ctx, r.s.cfg.NoiseRate)
	}
	if r.t.Power != nil {
		_ = r.t.Power.On(ctx)
	}
}

func (r *runner) offTime() time.Duration {
	if r.t.OffTime > 0 {
		return r.t.OffTime
	}
	return 200 * time.Millisecond
}

// learn reads the identity the device holds after provisioning and the ledger's record of it:
// the chain every later check compares with.
func (r *runner) learn(ctx context.Context) error {
	chain, kind, err := r.readAgreed(ctx)
	if err != nil {
		return err
	}
	if kind != "" {
		return fmt.Errorf("%s right after provisioning", kind)
	}
	if r.want == nil {
		k, err := r.t.Issuer.Lookup(ctx, chain[0].PublicKey)
		if err != nil {
			return fmt.Errorf("ledger lookup of the device key: %w", err)
		}
		if !k.Live() || k.Issued == nil {
			return errors.New("the ledger holds no live chain for the device's key")
		}
		r.want = k.Issued
	}
	key, err := ledger.KeyHash(r.want.Certificate.PublicKey)
	if err != nil {
		return err
	}
	r.key = key
	r.s.rep.setFact(r.tr, "sha256", pki.Fingerprint(r.want.Certificate))
	return device.Verify(chain, r.want, r.t.Issuer.Roots(), r.s.cfg.now())
}

// step runs one step with its retries and the identity check after it. It returns false when
// the target's identity is gone (torn or changed chain).
func (r *runner) step(ctx context.Context, cycle int, name string) bool {
	var lastErr error
	flaked := false
	for attempt := 0; attempt <= r.s.cfg.Retries; attempt++ {
		if attempt > 0 {
			r.s.rep.addRetry(r.tr, name)
			r.recover(ctx, attempt)
			flaked = true
		}
		start := time.Now()
		err := r.open(ctx)
		if err == nil {
			err = r.do(ctx, name)
		}
		var kind string
		if err == nil {
			kind, err = r.check(ctx, cycle, name)
		}
		d := time.Since(start)
		if kind != "" {
			r.s.rep.stepRun(r.tr, name, cycle, d, false)
			r.stop(cycle, name, kind, err)
			r.after(cycle, name)
			return false
		}
		if err == nil {
			r.s.rep.stepRun(r.tr, name, cycle, d, flaked)
			r.after(cycle, name)
			return true
		}
		lastErr = err
		if ctx.Err() != nil {
			return false
		}
	}
	r.s.rep.stepRunFailed(r.tr, name, cycle, Failure{Kind: KindStep, Target: r.t.Name, Cycle: cycle, Step: name,
		Error: lastErr.Error(), Transcript: excerpt(r.t.Transcript)})
	r.recover(ctx, 1) // the next step starts from a device that is on, on a fresh link
	r.after(cycle, name)
	return true
}

func (r *runner) after(cycle int, name string) {
	if r.s.cfg.AfterStep != nil {
		r.s.cfg.AfterStep(r.t.Name, cycle, name)
	}
}

// do is the operation of a step (verify has none: the check is the step).
func (r *runner) do(ctx context.Context, name string) error {
	ctx, cancel := r.timeout(ctx)
	defer cancel()
	switch name {
	case StepVerify:
		return nil
	case StepReboot:
		return r.d.Reboot(ctx)
	case StepReset:
		return r.d.FactoryReset(ctx)
	case StepReflash:
		_, err := r.d.(device.Flasher).Flash(ctx, r.s.cfg.Image, device.FlashOptions{ExpectVersion: r.s.cfg.ExpectVersion})
		return err
	case StepPowerCycle:
		return r.d.(device.PowerCycler).PowerCycle(ctx)
	case StepPowerCut:
		return r.powerCut(ctx)
	case StepReenum:
		return r.reenumerate(ctx)
	}
	return fmt.Errorf("soak: unknown step %q", name)
}

// powerCut cuts the power at a random moment. On a simulator with an image to flash, every
// other cut is armed at a random byte of the firmware transfer; otherwise the power goes off at
// a random moment of a reboot (0 to 1.5 s after it starts: shutdown, boot ROM, kernel, shell).
// The operation it interrupts may fail, that is the point. The power is on again, and the link
// fresh, before the identity check.
func (r *runner) powerCut(ctx context.Context) error {
	if f, ok := r.d.(device.Flasher); ok && r.t.Sim != nil && r.s.cfg.Image != nil && r.rng.IntN(2) == 0 {
		at := r.rng.IntN(len(r.s.cfg.Image.Data) + 1)
		if err := r.t.Sim.Cut(ctx, "flash", at, r.offTime()); err != nil {
			return err
		}
		r.s.rep.count(r.tr, "power_cuts_flash")
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = f.Flash(fctx, r.s.cfg.Image, device.FlashOptions{ExpectVersion: r.s.cfg.ExpectVersion})
		}()
		r.cancelWhenCut(fctx, cancel, done)
		<-done
		cancel()
		r.disarm(ctx)
	} else {
		delay := time.Duration(r.rng.Int64N(int64(1500 * time.Millisecond)))
		r.s.rep.count(r.tr, "power_cuts_reboot")
		rctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		d := r.d
		go func() { errc <- d.Reboot(rctx) }()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-errc:
			errc <- nil // the reboot ended first: the cut falls on the booted device
		}
		t.Stop()
		err := r.t.Power.Off(ctx)
		if err == nil {
			time.Sleep(r.offTime())
			err = r.t.Power.On(ctx)
		}
		cancel()
		<-errc // one driver on the port at a time
		if err != nil {
			return err
		}
	}
	// The driver may have given up mid-exchange: a fresh link and driver for the check.
	r.d.Close()
	r.d = nil
	return r.open(ctx)
}

// reenumerate has the simulator's adapter drop off and come back under a new device node, then
// finds the port again by the name the bench gives it (the stable name, as /dev/serial/by-id/...
// is for a real adapter): a fresh link and driver. A driver whose bench sets console.reopen
// would reconnect by itself; the soak does not count on it.
func (r *runner) reenumerate(ctx context.Context) error {
	if err := r.t.Sim.Reenumerate(ctx); err != nil {
		if strings.Contains(err.Error(), "unknown fault") {
			r.noReenum = true // e.g. an ACK module: its simulator does not re-enumerate
			r.s.rep.setFact(r.tr, "reenumerate", "not simulated for this family")
			return nil
		}
		return err
	}
	r.s.rep.count(r.tr, "reenumerations")
	r.d.Close()
	r.d = nil
	return r.open(ctx)
}

// cancelWhenCut ends an operation a cut interrupted (cancel), once the power went off: the
// driver's own timeouts, a YMODEM sender's for one, would only wait for a device that is not
// there. It returns when the operation is done.
func (r *runner) cancelWhenCut(ctx context.Context, cancel context.CancelFunc, done <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			if st, err := r.t.Power.State(ctx); err == nil && st == power.Off {
				r.s.rep.count(r.tr, "power_cuts_fired")
				cancel()
				return
			}
		}
	}
}

// check compares the identity the device holds with the ledger's. It returns a failure kind
// (torn, changed, double signature) with its error, or an ordinary error (the device could not
// be read), or neither.
func (r *runner) check(ctx context.Context, cycle int, step string) (string, error) {
	chain, kind, err := r.readAgreed(ctx)
	if kind != "" {
		return kind, err
	}
	if err != nil {
		return "", err
	}
	if err := device.Verify(chain, r.want, r.t.Issuer.Roots(), r.s.cfg.now()); err != nil {
		return KindChanged, fmt.Errorf("the device holds certificate %s, the ledger issued %s: %w",
			pki.Fingerprint(chain[0]), pki.Fingerprint(r.want.Certificate), err)
	}
	r.checkSignatures(ctx, cycle, step)
	return "", nil
}

// checkSignatures counts signatures the ledger records for the device key beyond the first:
// each one a double signature, counted once. A lookup failure is a ledger inconsistency.
func (r *runner) checkSignatures(ctx context.Context, cycle int, step string) {
	recs, err := r.t.Ledger.List(ctx, ledger.Filter{DeviceKey: r.key})
	if err != nil {
		if ctx.Err() == nil {
			r.s.rep.identityFailure(Failure{Kind: KindLedger, Target: r.t.Name, Cycle: cycle, Step: step,
				Error: fmt.Sprintf("ledger list of the device key: %v", err)})
		}
		return
	}
	total := 0
	for _, rec := range recs {
		total += max(rec.Signatures, 1)
	}
	for extra := total - 1; r.sigs < extra; {
		r.sigs++
		r.s.rep.identityFailure(Failure{Kind: KindDouble, Target: r.t.Name, Cycle: cycle, Step: step,
			Error: fmt.Sprintf("the ledger records %d signatures in %d record(s) for device key %s", total, len(recs), r.key)})
	}
}

// readAgreed reads the chain until it reads the issued chain, or two reads in a row agree. A chain that reads as none three
// times in a row, or that no read could parse, is torn. Two reads in a row that fail for another
// reason (a device that does not answer) end it with an ordinary error: the step's retry
// recovers the device.
func (r *runner) readAgreed(ctx context.Context) ([]*x509.Certificate, string, error) {
	var prev []*x509.Certificate
	none, content, other := 0, 0, 0
	var lastErr error
	for i := range maxReads {
		if i > 0 && r.t.Power != nil && lastErr != nil {
			_ = r.t.Power.On(ctx) // a cut may still be restoring
		}
		if r.d == nil {
			if err := r.open(ctx); err != nil {
				return nil, "", err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, r.s.cfg.ReadTimeout)
		chain, err := r.d.ReadChain(rctx)
		cancel()
		var ce *pki.ChainError
		switch {
		case err == nil:
			// The issued chain itself cannot be the line's doing: one read is enough. Anything
			// else must read the same twice.
			if r.want != nil && device.SameChain(chain, r.want.Chain) || prev != nil && device.SameChain(prev, chain) {
				return chain, "", nil
			}
			prev, none, other = chain, 0, 0
			continue
		case errors.Is(err, device.ErrNoChain):
			none++
			content++
			other = 0
			if none >= noneReads {
				return nil, KindTorn, fmt.Errorf("the device holds no chain (%d reads): %w", none, err)
			}
		case errors.As(err, &ce):
			none, other = 0, 0
			content++
		default:
			none = 0
			other++
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
		}
		prev, lastErr = nil, err
		if other >= 2 {
			break
		}
	}
	if content == maxReads {
		return nil, KindTorn, fmt.Errorf("no read of %d gave a whole chain: %w", maxReads, lastErr)
	}
	if lastErr == nil {
		lastErr = errors.New("no two reads of the chain agreed")
	}
	return nil, "", fmt.Errorf("reading the chain: %w", lastErr)
}

// excerptBytes is how much of a transcript's end a failure quotes.
const excerptBytes = 3000

// keep the excerpt to whole lines.
func trimToLines(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		return s[i+1:]
	}
	return s
}

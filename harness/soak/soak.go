package soak

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/harness/ledger"
	"hilbench/harness/power"
)

// Steps of a soak cycle, as the report names them.
const (
	StepProvision  = "provision"
	StepVerify     = "verify"
	StepReboot     = "reboot"
	StepReset      = "factory_reset"
	StepReflash    = "reflash"
	StepPowerCycle = "power_cycle"
	StepPowerCut   = "power_cut"
	StepReenum     = "reenumerate"
)

// Faults a soak injects (--faults).
const (
	FaultPowerCut    = "power_cut"
	FaultNoise       = "noise"
	FaultReenumerate = "reenumerate"
)

// KnownFaults lists the fault names Config.Faults accepts.
func KnownFaults() []string { return []string{FaultPowerCut, FaultNoise, FaultReenumerate} }

// Failure kinds.
const (
	KindStep      = "step_failure" // an ordinary failure that its retries did not get past
	KindTorn      = "torn_chain"
	KindChanged   = "changed_chain"
	KindDouble    = "double_signature"
	KindLedger    = "ledger_inconsistency"
	KindProvision = "provision_failure"
)

// Injector is a simulated target's fault channel (the simulator's power socket).
type Injector interface {
	Noise(ctx context.Context, rate float64) error
	// Cut arms one power cut at byte atByte of phase (upload, commit, flash, any); power returns
	// after restore (0: stays off).
	Cut(ctx context.Context, phase string, atByte int, restore time.Duration) error
	// Clear disarms a cut that did not fire and ends the noise.
	Clear(ctx context.Context) error
	// Reenumerate makes the USB-serial adapter come back under a new device node: the open port
	// is hung up and the target's port name moves to the new one.
	Reenumerate(ctx context.Context) error
}

// Power switches a target's power (harness/power: relay command, USB hub port, simulator).
type Power = power.Power

// Ledger is what the soak reads of the ledger.
type Ledger interface {
	List(ctx context.Context, f ledger.Filter) ([]ledger.Record, error)
	Check(ctx context.Context) ([]ledger.Problem, error)
}

// Target is one device under soak.
type Target struct {
	Name string
	// Open opens the device's link and driver; the soak reopens it after a failure.
	Open func(ctx context.Context) (device.Device, error)
	// Sim is the simulator's fault channel; nil for hardware.
	Sim Injector
	// Power is the target's power switch; nil when it has none.
	Power Power
	// OffTime is how long a cut keeps the power off before it returns (default 200 ms).
	OffTime time.Duration
	// Transcript is the file the driver writes every byte to; the first failure of each step
	// quotes its end ("" for none).
	Transcript string
	// Family is for the report ("acs", "ack").
	Family string
	// Issuer provisions the target; Ledger is the record its identity is checked against (the
	// bench's station: targets of several benches each have their own).
	Issuer device.Issuer
	Ledger Ledger
}

// Config is one soak run.
type Config struct {
	Cycles      int
	Faults      []string
	Seed        uint64
	NoiseRate   float64 // byte error rate of the noise fault (default 1e-4)
	Destructive bool    // on hardware: factory reset, reflash, power cut too
	Retries     int     // retries of an ordinary step failure (default 2; < 0: none)
	// Image, when set, is flashed in every cycle (targets that are device.Flashers).
	Image         *flash.Image
	ExpectVersion string
	// StepTimeout bounds one attempt of one step (default 3 minutes); ReadTimeout one read of
	// the chain, a boot after a power cut included (default 1 minute).
	StepTimeout time.Duration
	ReadTimeout time.Duration
	// Progress receives one line every ProgressEvery cycles (default 10).
	Progress      io.Writer
	ProgressEvery int
	// AfterStep, when set, is called after each step of each target (tests change a device's
	// storage here, between steps).
	AfterStep func(target string, cycle int, step string)
	Now       func() time.Time
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) has(fault string) bool { return slices.Contains(c.Faults, fault) }

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Cycles < 1 {
		return fmt.Errorf("soak: cycles must be at least 1, not %d", c.Cycles)
	}
	for _, f := range c.Faults {
		if !slices.Contains(KnownFaults(), f) {
			return fmt.Errorf("soak: unknown fault %q (known: %s)", f, strings.Join(KnownFaults(), ", "))
		}
	}
	if c.NoiseRate < 0 || c.NoiseRate > 1 {
		return fmt.Errorf("soak: noise rate %g is not from 0 to 1", c.NoiseRate)
	}
	return nil
}

// Run soaks every target in parallel and returns the report. It fails only when it could not
// run at all; what happened to the targets is in the report (Report.Failed).
func Run(ctx context.Context, cfg Config, targets []Target) (*Report, error) {
	if cfg.NoiseRate == 0 {
		cfg.NoiseRate = 1e-4
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 3 * time.Minute
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = time.Minute
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 10
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, t := range targets {
		if t.Issuer == nil || t.Ledger == nil || t.Open == nil {
			return nil, fmt.Errorf("soak: target %s: an opener, an issuer and a ledger are required", t.Name)
		}
	}
	rep := newReport(cfg, cfg.now())
	s := &soak{cfg: &cfg, rep: rep, done: make([]int, len(targets)), start: time.Now(), seenProblems: map[string]bool{}}
	var wg sync.WaitGroup
	for i, t := range targets {
		tr := rep.target(t.Name, t.Family, t.Sim != nil)
		r := &runner{s: s, t: t, idx: i, tr: tr, rng: targetRand(cfg.Seed, t.Name)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	wg.Wait()
	for _, t := range targets { // a last look after every target is done (each ledger once)
		s.checkLedger(ctx, t.Ledger, "end", cfg.Cycles)
	}
	rep.finish(cfg.now())
	return rep, ctx.Err()
}

// targetRand is a target's own random source: the same seed gives each target the same choices
// however the targets' goroutines interleave.
func targetRand(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// soak is the state the targets share.
type soak struct {
	cfg   *Config
	rep   *Report
	start time.Time

	mu           sync.Mutex
	done         []int // cycles each target finished (or cfg.Cycles once it stopped)
	reported     int   // the last cycle progress was printed for
	seenProblems map[string]bool
	ledgerMu     sync.Mutex // one Check at a time
}

// cycleDone notes that target idx finished cycle; a progress line goes out each time the
// slowest target passes a multiple of ProgressEvery.
func (s *soak) cycleDone(idx, cycle int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[idx] = cycle
	low := slices.Min(s.done)
	if s.cfg.Progress == nil {
		return
	}
	for next := s.reported + s.cfg.ProgressEvery; next <= low || (low == s.cfg.Cycles && s.reported < low); next += s.cfg.ProgressEvery {
		n := min(next, s.cfg.Cycles)
		c := s.rep.counters()
		fmt.Fprintf(s.cfg.Progress, "soak: cycle %d/%d on %d target(s) after %v: %d steps, %d failures, %d retries; torn %d, changed %d, double signatures %d, ledger %d\n",
			n, s.cfg.Cycles, len(s.done), time.Since(s.start).Round(time.Second), c.Runs, c.StepFailures, c.Retries,
			c.TornChains, c.ChangedChains, c.DoubleSignatures, c.LedgerInconsistencies)
		s.reported = n
		if n == s.cfg.Cycles {
			break
		}
	}
}

// checkLedger runs the ledger's consistency check; each problem is counted once, however often
// it is seen again.
func (s *soak) checkLedger(ctx context.Context, lg Ledger, target string, cycle int) {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	probs, err := lg.Check(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.rep.identityFailure(Failure{Kind: KindLedger, Target: target, Cycle: cycle, Step: "ledger_check",
				Error: fmt.Sprintf("ledger check failed: %v", err)})
		}
		return
	}
	for _, p := range probs {
		key := fmt.Sprintf("%p/%s/%d/%s", lg, p.Kind, p.RecordID, p.Detail)
		if s.seenProblems[key] {
			continue
		}
		s.seenProblems[key] = true
		s.rep.identityFailure(Failure{Kind: KindLedger, Target: target, Cycle: cycle, Step: "ledger_check",
			Error: fmt.Sprintf("%s (record %d): %s", p.Kind, p.RecordID, p.Detail)})
	}
}

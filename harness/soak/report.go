package soak

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"hilbench/harness/atomicfile"
)

// Counters are the soak's headline figures. The first four must be 0.
type Counters struct {
	TornChains            int `json:"torn_chains"`
	ChangedChains         int `json:"changed_chains"`
	DoubleSignatures      int `json:"double_signatures"`
	LedgerInconsistencies int `json:"ledger_inconsistencies"`
	Runs                  int `json:"step_runs"`
	StepFailures          int `json:"step_failures"` // steps that failed after their retries
	Retries               int `json:"retries"`
	Flakes                int `json:"flakes"` // steps that failed, then passed on a retry
	ProvisionFailures     int `json:"provision_failures"`
}

// Identity is the sum of the identity counters.
func (c Counters) Identity() int {
	return c.TornChains + c.ChangedChains + c.DoubleSignatures + c.LedgerInconsistencies
}

// Failure is one failed step or identity finding.
type Failure struct {
	Kind       string `json:"kind"`
	Target     string `json:"target"`
	Cycle      int    `json:"cycle"`
	Step       string `json:"step"`
	Error      string `json:"error"`
	Transcript string `json:"transcript,omitempty"` // the end of the target's transcript then
}

// StepStats are one step's figures (for one target, or over all targets).
type StepStats struct {
	Step      string   `json:"step"`
	Runs      int      `json:"runs"`
	Failures  int      `json:"failures"`
	Retries   int      `json:"retries"`
	Flakes    int      `json:"flakes"`
	FlakeRate float64  `json:"flake_rate"` // (flakes + failures) / runs
	P50ms     float64  `json:"p50_ms"`
	P99ms     float64  `json:"p99_ms"`
	MaxMs     float64  `json:"max_ms"`
	First     *Failure `json:"first_failure,omitempty"`

	durations []time.Duration
}

// TargetReport is one target's soak.
type TargetReport struct {
	Name      string            `json:"name"`
	Family    string            `json:"family,omitempty"`
	Simulated bool              `json:"simulated"`
	Cycles    int               `json:"cycles_done"`
	Stopped   string            `json:"stopped,omitempty"` // why its soak ended early
	Steps     []*StepStats      `json:"steps"`
	Facts     map[string]string `json:"facts,omitempty"`
	counts    map[string]int
}

// Report is a soak's outcome: soak.json.
type Report struct {
	Started     time.Time       `json:"started"`
	Finished    time.Time       `json:"finished"`
	Seed        uint64          `json:"seed"`
	Cycles      int             `json:"cycles"`
	Faults      []string        `json:"faults"`
	NoiseRate   float64         `json:"noise_rate,omitempty"`
	Destructive bool            `json:"destructive"`
	Retries     int             `json:"retries_per_step"`
	Counters    Counters        `json:"counters"`
	Steps       []*StepStats    `json:"steps"` // over all targets
	Targets     []*TargetReport `json:"targets"`
	Failures    []Failure       `json:"failures"` // identity findings, and each step's first few failures per target
	// FailuresByCycle counts failures (after retries, and identity findings) per cycle; index 0
	// is provisioning.
	FailuresByCycle []int `json:"failures_by_cycle"`

	mu sync.Mutex
}

// maxFailuresPerStep bounds the failures a target's step keeps in Failures (all are counted).
const maxFailuresPerStep = 3

func newReport(cfg Config, now time.Time) *Report {
	faults := slices.Clone(cfg.Faults)
	if faults == nil {
		faults = []string{}
	}
	r := &Report{Started: now, Seed: cfg.Seed, Cycles: cfg.Cycles, Faults: faults, Destructive: cfg.Destructive,
		Retries: cfg.Retries, FailuresByCycle: make([]int, cfg.Cycles+1), Failures: []Failure{}}
	if slices.Contains(cfg.Faults, FaultNoise) {
		r.NoiseRate = cfg.NoiseRate
	}
	return r
}

func (r *Report) target(name, family string, sim bool) *TargetReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &TargetReport{Name: name, Family: family, Simulated: sim, Facts: map[string]string{}, counts: map[string]int{}}
	r.Targets = append(r.Targets, t)
	return t
}

func (t *TargetReport) stats(step string) *StepStats {
	for _, s := range t.Steps {
		if s.Step == step {
			return s
		}
	}
	s := &StepStats{Step: step}
	t.Steps = append(t.Steps, s)
	return s
}

// addRetry counts a retry of a target's step.
func (r *Report) addRetry(t *TargetReport, step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.stats(step).Retries++
	r.Counters.Retries++
}

// count raises a target's counter fact (power cuts by kind).
func (r *Report) count(t *TargetReport, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.counts[name]++
	t.Facts[name] = strconv.Itoa(t.counts[name])
}

func (r *Report) setFact(t *TargetReport, name, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Facts[name] = value
}

func (r *Report) stepRun(t *TargetReport, step string, cycle int, d time.Duration, flaked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := t.stats(step)
	s.Runs++
	s.durations = append(s.durations, d)
	r.Counters.Runs++
	if flaked {
		s.Flakes++
		r.Counters.Flakes++
	}
}

func (r *Report) stepRunFailed(t *TargetReport, step string, cycle int, f Failure) {
	r.mu.Lock()
	s := t.stats(step)
	s.Runs++
	r.Counters.Runs++
	r.mu.Unlock()
	r.stepFailure(t, step, cycle, f)
}

func (r *Report) stepFailure(t *TargetReport, step string, cycle int, f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := t.stats(step)
	s.Failures++
	if f.Kind == KindProvision {
		r.Counters.ProvisionFailures++
	} else {
		r.Counters.StepFailures++
	}
	if s.First == nil {
		first := f
		s.First = &first
	}
	if s.Failures <= maxFailuresPerStep {
		r.Failures = append(r.Failures, f)
	}
	r.byCycle(cycle)
}

func (r *Report) identityFailure(f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch f.Kind {
	case KindTorn:
		r.Counters.TornChains++
	case KindChanged:
		r.Counters.ChangedChains++
	case KindDouble:
		r.Counters.DoubleSignatures++
	case KindLedger:
		r.Counters.LedgerInconsistencies++
	}
	for _, t := range r.Targets {
		if t.Name == f.Target {
			s := t.stats(f.Step)
			s.Failures++
			if s.First == nil {
				first := f
				s.First = &first
			}
		}
	}
	r.Failures = append(r.Failures, f)
	r.byCycle(f.Cycle)
}

func (r *Report) byCycle(c int) {
	if c >= 0 && c < len(r.FailuresByCycle) {
		r.FailuresByCycle[c]++
	}
}

func (r *Report) counters() Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Counters
}

// finish computes the percentiles and the per-step totals over all targets.
func (r *Report) finish(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Finished = now
	sort.Slice(r.Targets, func(i, j int) bool { return r.Targets[i].Name < r.Targets[j].Name })
	all := map[string]*StepStats{}
	var order []string
	for _, t := range r.Targets {
		for _, s := range t.Steps {
			s.summarize()
			a := all[s.Step]
			if a == nil {
				a = &StepStats{Step: s.Step}
				all[s.Step] = a
				order = append(order, s.Step)
			}
			a.Runs += s.Runs
			a.Failures += s.Failures
			a.Retries += s.Retries
			a.Flakes += s.Flakes
			a.durations = append(a.durations, s.durations...)
			if a.First == nil && s.First != nil {
				a.First = s.First
			}
		}
	}
	r.Steps = r.Steps[:0]
	for _, name := range stepOrder(order) {
		a := all[name]
		a.summarize()
		r.Steps = append(r.Steps, a)
	}
}

// stepOrder puts steps in cycle order, unknown names last.
func stepOrder(names []string) []string {
	known := []string{StepProvision, StepVerify, StepReboot, StepReset, StepReflash, StepPowerCycle, StepPowerCut, StepReenum}
	rank := func(s string) int {
		if i := slices.Index(known, s); i >= 0 {
			return i
		}
		return len(known)
	}
	slices.SortStableFunc(names, func(a, b string) int { return rank(a) - rank(b) })
	return names
}

func (s *StepStats) summarize() {
	if s.Runs > 0 {
		s.FlakeRate = float64(s.Flakes+s.Failures) / float64(s.Runs)
	}
	if len(s.durations) == 0 {
		return
	}
	d := slices.Clone(s.durations)
	slices.Sort(d)
	s.P50ms = ms(percentile(d, 0.50))
	s.P99ms = ms(percentile(d, 0.99))
	s.MaxMs = ms(d[len(d)-1])
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Durations are the step times of one step over all targets (after the run), for the plots.
func (r *Report) durations(step string) []time.Duration {
	for _, s := range r.Steps {
		if s.Step == step {
			return s.durations
		}
	}
	return nil
}

// Failed says whether the soak failed: an identity counter is not 0, or a target could not be
// provisioned. Steps that failed after their retries are flakes to look at, reported but not
// fatal unless strict.
func (r *Report) Failed(strict bool) bool {
	c := r.Counters
	return c.Identity() > 0 || c.ProvisionFailures > 0 || strict && c.StepFailures > 0
}

// WriteJSON writes soak.json.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

// WriteFiles writes soak.json, soak-junit.xml and soak.html into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := r.WriteJSON(filepath.Join(dir, "soak.json")); err != nil {
		return err
	}
	if err := r.WriteJUnit(filepath.Join(dir, "soak-junit.xml")); err != nil {
		return err
	}
	return r.WriteHTML(filepath.Join(dir, "soak.html"))
}

// excerpt is the end of a transcript, whole lines, or "" without one.
func excerpt(path string) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-excerptBytes, 0)
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	s := string(buf[:n])
	if off > 0 {
		s = trimToLines(s)
	}
	return s
}

func (r *Report) cycleDone(t *TargetReport, cycle int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Cycles = cycle
}

func (r *Report) setStopped(t *TargetReport, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Stopped = why
}

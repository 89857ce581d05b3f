package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"hilbench/harness/atomicfile"
	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/plan"
	"hilbench/harness/station/web"
	"hilbench/harness/testrecord"
)

// Ledger is what the runner needs of the ledger: the station's test runs.
type Ledger interface {
	BeginTest(ctx context.Context, t ledger.TestRun) error
	EndTest(ctx context.Context, id string, outcome ledger.TestOutcome, ended time.Time, record []byte) error
	GetTest(ctx context.Context, id string) (*ledger.TestRun, error)
	ListTests(ctx context.Context, f ledger.TestFilter) ([]ledger.TestRun, error)
}

// OpenFunc opens a bench target as a device whose transcript goes to dir ("" for none): the CLI
// wraps targets.Open (harness/ never imports targets/).
type OpenFunc func(ctx context.Context, t *bench.Target, dir string) (device.Device, error)

// Config is what a station run needs.
type Config struct {
	Station  string // the station's name in records (default: the host name)
	Operator string
	RunID    string // names the batch (default: the start time)
	Plan     *plan.Plan
	Targets  []*bench.Target
	Issuer   device.Issuer
	Ledger   Ledger
	Out      string   // output directory: records/, runs/
	Open     OpenFunc // required

	Signer         string             // the signer's description (records' attestation, the page's counters)
	DAKFingerprint string             // SHA-256 of the DAK certificate, hex
	SignaturesLeft func() int64       // the DAK's budget left; nil or -1: unknown
	MaxDUTs        int                // stop after this many DUTs have started (0: no limit)
	ProbeEvery     time.Duration      // how often an empty slot is probed for a DUT (default 500ms)
	ProbeTimeout   time.Duration      // how long a probe waits for the console to answer (default 2s)
	Publish        func(web.Snapshot) // told every change (the web page); may be nil
	Display        *Display           // terminal mode; may be nil
	Logf           func(format string, args ...any)
	Now            func() time.Time
	// HoldPorts, when set, holds each slot's port lock for the whole run (default: LockPorts).
	HoldPorts func(ts []*bench.Target) (io.Closer, error)
}

// Runner runs a station.
type Runner struct {
	cfg   Config
	start time.Time

	mu       sync.Mutex
	slots    []*slot
	operator string
	started  int // DUTs started (MaxDUTs)
	counters web.Counters
	recent   []web.RecordLink
	records  []*testrecord.Record // this batch, for JUnit
	changed  chan struct{}        // closed and replaced on every state change

	pubMu  sync.Mutex // publish
	left   int64      // signatures left, as last asked (pubMu)
	leftAt time.Time
	junit  sync.Mutex // one JUnit write at a time: the newest batch is the one that stays

	drain  chan struct{}
	drainO sync.Once
	abort  context.Context
	cancel context.CancelFunc
}

type slot struct {
	t       *bench.Target
	state   web.SlotState
	stopReq bool
	wake    chan struct{}
}

var operatorRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// New checks cfg and returns a runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Plan == nil || len(cfg.Targets) == 0 || cfg.Issuer == nil || cfg.Ledger == nil || cfg.Out == "" || cfg.Open == nil {
		return nil, errors.New("station: a plan, targets, an issuer, a ledger, an output directory and an OpenFunc are required")
	}
	if cfg.Operator != "" && !operatorRE.MatchString(cfg.Operator) {
		return nil, fmt.Errorf("station: operator id %q: 1 to 64 letters, digits, '.', '_', '@' or '-'", cfg.Operator)
	}
	if cfg.Station == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "station"
		}
		cfg.Station = h
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RunID == "" {
		cfg.RunID = cfg.Now().UTC().Format("20060102T150405.000Z") + "-station"
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 500 * time.Millisecond
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 2 * time.Second
	}
	if cfg.HoldPorts == nil {
		cfg.HoldPorts = LockPorts
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	r := &Runner{cfg: cfg, operator: cfg.Operator, changed: make(chan struct{}), drain: make(chan struct{})}
	r.abort, r.cancel = context.WithCancel(context.Background())
	for _, t := range cfg.Targets {
		r.slots = append(r.slots, &slot{t: t, state: web.SlotState{Name: t.Name, State: web.StateIdle}, wake: make(chan struct{}, 1)})
	}
	r.counters.SignaturesLeft = -1
	r.counters.Signer = cfg.Signer
	return r, nil
}

// Drain lets the tests in flight finish and starts no new one (the first Ctrl-C).
func (r *Runner) Drain() {
	r.drainO.Do(func() { close(r.drain) })
	r.changedLocked(true)
}

// Abort stops the tests in flight now; they are recorded ABORTED (the second Ctrl-C).
func (r *Runner) Abort() {
	r.Drain()
	r.cancel()
}

func (r *Runner) draining() bool {
	select {
	case <-r.drain:
		return true
	default:
		return false
	}
}

// Run runs every slot until the run is drained (or aborted) or MaxDUTs DUTs have been tested,
// then writes the batch's JUnit XML. It returns the batch's records.
func (r *Runner) Run(ctx context.Context) ([]*testrecord.Record, error) {
	hold, err := r.cfg.HoldPorts(r.cfg.Targets)
	if err != nil {
		return nil, err
	}
	defer hold.Close()
	r.start = r.cfg.Now()
	stopCtx := context.AfterFunc(ctx, r.Drain)
	defer stopCtx()
	r.publish()
	var wg sync.WaitGroup
	for _, s := range r.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.slotLoop(s)
		}()
	}
	wg.Wait()
	r.mu.Lock()
	recs := append([]*testrecord.Record(nil), r.records...)
	r.mu.Unlock()
	return recs, r.writeJUnit()
}

// JUnitPath is where the batch's JUnit XML goes.
func (r *Runner) JUnitPath() string {
	return filepath.Join(r.cfg.Out, "runs", r.cfg.RunID, "junit.xml")
}

func (r *Runner) writeJUnit() error {
	r.junit.Lock()
	defer r.junit.Unlock()
	r.mu.Lock()
	recs := append([]*testrecord.Record(nil), r.records...)
	r.mu.Unlock()
	b, err := testrecord.JUnit(r.cfg.Station+" "+r.cfg.RunID, recs)
	if err != nil {
		return err
	}
	return atomicfile.Write(r.JUnitPath(), b, 0o644)
}

// claim takes one of the MaxDUTs.
func (r *Runner) claim() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.MaxDUTs > 0 && r.started >= r.cfg.MaxDUTs {
		return false
	}
	r.started++
	return true
}

func (r *Runner) full() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.MaxDUTs > 0 && r.started >= r.cfg.MaxDUTs
}

func (r *Runner) slotLoop(s *slot) {
	for {
		if r.draining() || r.full() {
			r.setState(s, func(st *web.SlotState) {
				if st.State == web.StateIdle || st.State == web.StateStopping {
					st.State = web.StateStopped
				}
			})
			return
		}
		if r.waitStarted(s) {
			continue // drained or woken: look again
		}
		r.setState(s, func(st *web.SlotState) {
			if st.State == web.StateStopped {
				st.State = web.StateIdle
			}
		})
		if !r.waitPresent(s) {
			continue
		}
		if !r.claim() {
			continue
		}
		dut := r.test(s)
		r.release(s)
		if r.draining() || r.full() {
			continue // the run ends: nobody waits for the DUT to be pulled
		}
		r.waitRemoved(s, dut)
	}
}

// waitStarted blocks while the slot is stopped; it reports whether it waited.
func (r *Runner) waitStarted(s *slot) bool {
	r.mu.Lock()
	stopped := s.stopReq
	if stopped && s.state.State != web.StateStopped {
		s.state.State = web.StateStopped
		r.changedLocked(false)
	}
	r.mu.Unlock()
	if !stopped {
		return false
	}
	r.publish()
	select {
	case <-s.wake:
	case <-r.drain:
	}
	return true
}

// probe opens the slot's port and asks whether a DUT answers on it.
func (r *Runner) probe(s *slot) bool {
	ok, _ := r.probeID(s, false)
	return ok
}

// probeID is probe that also reads the DUT's serial (when withID, and the device or the plan
// says how): a board swapped in before the last one was seen gone is a new DUT, not the old one.
func (r *Runner) probeID(s *slot, withID bool) (bool, string) {
	ctx, cancel := context.WithTimeout(r.abort, r.cfg.ProbeTimeout)
	defer cancel()
	d, err := r.cfg.Open(ctx, s.t, "")
	if err != nil {
		return false, ""
	}
	defer d.Close()
	if answers(ctx, d) != nil {
		return false, ""
	}
	if !withID {
		return true, ""
	}
	t := &dutTest{r: r, s: s, d: d}
	if id, ok := d.(device.Identifier); ok {
		v, _ := id.DeviceID(ctx)
		return true, v
	}
	if p := r.cfg.Plan.DUTID; p != nil {
		if out, err := t.shell(ctx, p.Command); err == nil {
			v, _ := p.Capture(out)
			return true, strings.TrimSpace(v)
		}
	}
	return true, ""
}

// answers asks a device for a sign of life: its prompt, or its identity.
func answers(ctx context.Context, d device.Device) error {
	if sy, ok := d.(interface{ Sync(context.Context) error }); ok {
		return sy.Sync(ctx)
	}
	if id, ok := d.(device.Identifier); ok {
		_, err := id.DeviceID(ctx)
		return err
	}
	_, err := d.ReadChain(ctx)
	if errors.Is(err, device.ErrNoChain) {
		return nil
	}
	return err
}

// waitPresent probes until a DUT answers; false when the run drains or the slot is stopped.
func (r *Runner) waitPresent(s *slot) bool {
	for {
		if r.draining() || r.stopRequested(s) || r.full() {
			return false
		}
		if r.probe(s) {
			return true
		}
		select {
		case <-time.After(r.cfg.ProbeEvery):
		case <-r.drain:
		case <-s.wake:
		}
	}
}

// waitRemoved probes until the console is silent (the DUT pulled) or another DUT answers (one
// swapped in between two probes); a drain ends the wait.
func (r *Runner) waitRemoved(s *slot, last string) {
	for !r.draining() {
		present, id := r.probeID(s, last != "")
		if !present || id != "" && id != last {
			return
		}
		select {
		case <-time.After(r.cfg.ProbeEvery):
		case <-r.drain:
		}
	}
}

// release does what the plan says with the slot when a DUT's test ends.
func (r *Runner) release(s *slot) {
	if r.cfg.Plan.Release != plan.ReleasePowerOff {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := powerOff(ctx, s.t); err != nil {
		r.cfg.Logf("slot %s: switching the power off at the end of the test: %v", s.t.Name, err)
	}
}

func (r *Runner) stopRequested(s *slot) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.stopReq
}

func (r *Runner) slotByName(name string) (*slot, error) {
	for _, s := range r.slots {
		if s.t.Name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no slot %q", name)
}

// StopSlot stops a slot after its DUT in flight (web.Control).
func (r *Runner) StopSlot(name string) error {
	s, err := r.slotByName(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	s.stopReq = true
	if s.state.State == web.StateRunning {
		s.state.State = web.StateStopping
	} else {
		s.state.State = web.StateStopped
	}
	r.changedLocked(false)
	r.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	r.publish()
	return nil
}

// StartSlot starts a stopped slot again (web.Control).
func (r *Runner) StartSlot(name string) error {
	s, err := r.slotByName(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	s.stopReq = false
	if s.state.State == web.StateStopped || s.state.State == web.StateStopping {
		s.state.State = web.StateIdle
		if s.state.Ended.IsZero() && !s.state.Started.IsZero() {
			s.state.State = web.StateRunning
		}
	}
	r.changedLocked(false)
	r.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	r.publish()
	return nil
}

// SetOperator names the operator of the tests that start from now on (web.Control).
func (r *Runner) SetOperator(id string) error {
	if !operatorRE.MatchString(id) {
		return fmt.Errorf("operator id %q: 1 to 64 letters, digits, '.', '_', '@' or '-'", id)
	}
	r.mu.Lock()
	r.operator = id
	r.changedLocked(false)
	r.mu.Unlock()
	r.publish()
	return nil
}

// RecordDir is where a test's record, transcript and chain go.
func (r *Runner) RecordDir(id string) string { return filepath.Join(r.cfg.Out, "records", id) }

// Record returns a test record's JSON (web.Control): the file, else the ledger's copy.
func (r *Runner) Record(id string) ([]byte, error) {
	if !idRE.MatchString(id) {
		return nil, fs.ErrNotExist
	}
	b, err := os.ReadFile(filepath.Join(r.RecordDir(id), "record.json"))
	if err == nil {
		return b, nil
	}
	tr, lerr := r.cfg.Ledger.GetTest(context.Background(), id)
	if lerr != nil || len(tr.Record) == 0 {
		return nil, fs.ErrNotExist
	}
	return tr.Record, nil
}

// Transcript returns the transcript of a test's DUT (web.Control).
func (r *Runner) Transcript(id string) ([]byte, error) {
	if !idRE.MatchString(id) {
		return nil, fs.ErrNotExist
	}
	m, _ := filepath.Glob(filepath.Join(r.RecordDir(id), "*.transcript"))
	if len(m) == 0 {
		return nil, fs.ErrNotExist
	}
	return os.ReadFile(m[0])
}

var _ web.Control = (*Runner)(nil)

// setState changes a slot's tile and tells the page and the terminal.
func (r *Runner) setState(s *slot, fn func(*web.SlotState)) {
	r.mu.Lock()
	fn(&s.state)
	r.changedLocked(false)
	r.mu.Unlock()
	r.publish()
}

func (r *Runner) changedLocked(lock bool) {
	if lock {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// Changed is closed at the next change of the station's state (tests, the terminal).
func (r *Runner) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Snapshot is the station's state now.
func (r *Runner) Snapshot() web.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *Runner) snapshotLocked() web.Snapshot {
	sn := web.Snapshot{Station: r.cfg.Station, Operator: r.operator, Counters: r.counters}
	for _, s := range r.slots {
		sn.Slots = append(sn.Slots, s.state)
	}
	sn.Recent = append([]web.RecordLink(nil), r.recent...)
	fin := sn.Counters.Passed + sn.Counters.Failed + sn.Counters.Errors + sn.Counters.Aborted
	if fin > 0 {
		sn.Counters.Yield = float64(sn.Counters.Passed) / float64(fin)
		if h := r.cfg.Now().Sub(r.start).Hours(); h > 0 {
			sn.Counters.DUTsPerHour = float64(fin) / h
		}
	}
	return sn
}

// publish tells the page and the terminal. One at a time, each taking its snapshot inside, so
// a slower caller never publishes an older state after a newer one.
func (r *Runner) publish() {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	sn := r.Snapshot()
	if r.cfg.SignaturesLeft != nil {
		// The budget is a ledger query: asked at most once a second, not on every change.
		if now := r.cfg.Now(); now.Sub(r.leftAt) >= time.Second {
			r.left, r.leftAt = r.cfg.SignaturesLeft(), now
		}
		sn.Counters.SignaturesLeft = r.left
	}
	if r.cfg.Publish != nil {
		r.cfg.Publish(sn)
	}
	if r.cfg.Display != nil {
		r.cfg.Display.Show(sn)
	}
}

// finished counts a record and lists it on the page.
func (r *Runner) finished(rec *testrecord.Record) {
	r.mu.Lock()
	switch rec.Outcome {
	case testrecord.Pass:
		r.counters.Passed++
	case testrecord.Fail:
		r.counters.Failed++
	case testrecord.Error:
		r.counters.Errors++
	case testrecord.Aborted:
		r.counters.Aborted++
	}
	r.records = append(r.records, rec)
	r.recent = append([]web.RecordLink{{ID: rec.ID, DUT: rec.DUTID, Slot: rec.Slot, Outcome: rec.Outcome, Ended: rec.EndedAt}}, r.recent...)
	if len(r.recent) > 50 {
		r.recent = r.recent[:50]
	}
	r.mu.Unlock()
	// The JUnit file follows the batch, so a station killed mid-batch leaves what it finished.
	if err := r.writeJUnit(); err != nil {
		r.cfg.Logf("writing JUnit XML: %v", err)
	}
}

// newID is a test id: time, slot and a random part (unique across stations and restarts).
func (r *Runner) newID(slot string, t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405.000Z") + "-" + slot + "-" + hex.EncodeToString(b[:])
}

func (r *Runner) currentOperator() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.operator
}

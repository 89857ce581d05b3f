package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/pki"
	"hilbench/harness/report"
	"hilbench/harness/station"
	"hilbench/targets/ack"
	"hilbench/targets/acs"
)

// targetFlags are the flags every command that works on bench targets shares.
type targetFlags struct {
	bench  string
	target string
	all    bool
	out    string
	jobs   int
}

func (f *targetFlags) register(fs interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
	IntVar(*int, string, int, string)
}) {
	fs.StringVar(&f.bench, "bench", "", "bench file (YAML)")
	fs.StringVar(&f.target, "target", "", "work on this target only")
	fs.BoolVar(&f.all, "all", false, "work on every target of the bench")
	fs.StringVar(&f.out, "out", "", "output directory (default: the bench file's output)")
	fs.IntVar(&f.jobs, "jobs", 32, "targets worked on at once")
}

func (f *targetFlags) load() (*bench.Bench, []*bench.Target, error) {
	if f.bench == "" {
		return nil, nil, fmt.Errorf("%w: --bench FILE is required", errUsage)
	}
	if (f.target == "") == !f.all {
		return nil, nil, fmt.Errorf("%w: give exactly one of --target NAME and --all", errUsage)
	}
	b, err := bench.Load(f.bench)
	if err != nil {
		return nil, nil, err
	}
	if f.out == "" {
		f.out = b.Output
	}
	if f.jobs < 1 {
		return nil, nil, fmt.Errorf("%w: --jobs must be at least 1", errUsage)
	}
	if f.all {
		targets := make([]*bench.Target, len(b.Targets))
		for i := range b.Targets {
			targets[i] = &b.Targets[i]
		}
		return b, targets, nil
	}
	t, err := b.Target(f.target)
	if err != nil {
		return nil, nil, err
	}
	return b, []*bench.Target{t}, nil
}

// runDir makes out/runs/<time>-<command> for a run's transcripts and report.
func runDir(out, command string, now time.Time) (string, error) {
	dir := filepath.Join(out, "runs", now.UTC().Format("20060102T150405.000Z")+"-"+command)
	return dir, os.MkdirAll(dir, 0o755)
}

// progress prints one line per step per target, stamped with the time since the run started.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *progress) step(target, step string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%8s  %-12s %s\n", time.Since(p.start).Round(time.Millisecond), target, step)
}

// forEach runs fn for every target, at most jobs at once, and collects the outcomes.
func forEach(ctx context.Context, targets []*bench.Target, jobs int, rep *report.Report, op string,
	fn func(ctx context.Context, t *bench.Target, o *report.Outcome) error) {
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			o := &report.Outcome{Target: t.Name, Op: op, Facts: map[string]string{}}
			start := time.Now()
			err := fn(ctx, t, o)
			o.Duration = time.Since(start)
			o.Passed = err == nil
			if err != nil {
				o.Error = err.Error()
				var se *acs.StepError
				var ae *ack.StepError
				switch {
				case errors.As(err, &se):
					o.Step, o.Error = se.Step, se.Err.Error()
				case errors.As(err, &ae):
					o.Step, o.Error = ae.Step, ae.Err.Error()
				}
			}
			rep.Add(o)
		}()
	}
	wg.Wait()
}

// finish writes the report and the summary table; it fails when any target failed.
func finish(rep *report.Report, dir string, stdout io.Writer) error {
	rep.Finish(time.Now())
	path := filepath.Join(dir, "report.json")
	if err := rep.WriteJSON(path); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "report and transcripts: %s\n", dir)
	if n := rep.Failed(); n > 0 {
		return fmt.Errorf("%d of %d targets failed", n, len(rep.Outcomes))
	}
	return nil
}

func cmdProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("provision", stderr)
	var tf targetFlags
	tf.register(fs)
	reprovision := fs.Bool("reprovision", false, "replace the identity of devices that already have one")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b, targets, err := tf.load()
	if err != nil {
		return err
	}
	st, err := station.Open(ctx, b, time.Now())
	if err != nil {
		return err
	}
	defer st.Close()

	start := time.Now()
	dir, err := runDir(tf.out, "provision", start)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "provisioning %d target(s) with %s\n", len(targets), st.Description())
	prog := &progress{w: stdout, start: start}
	rep := report.New("provision", start)
	var profile *pki.Profile
	for _, t := range targets {
		if t.Family == bench.FamilyACK && profile == nil {
			// The ACK driver builds the CSR's subject from the product profile.
			if profile, err = station.LoadProfile(b); err != nil {
				return err
			}
		}
	}
	forEach(ctx, targets, tf.jobs, rep, "provision", func(ctx context.Context, t *bench.Target, o *report.Outcome) error {
		if t.Family == bench.FamilyACK {
			err := provisionACK(ctx, t, st, profile, dir, tf.out, *reprovision, prog, o)
			if err == nil {
				prog.step(t.Name, "provisioned")
			} else {
				prog.step(t.Name, "FAILED: "+err.Error())
			}
			return err
		}
		s, err := acs.Open(ctx, t, dir, console.NewRedactor())
		if err != nil {
			return err
		}
		defer s.Close()
		issued, err := s.Provision(ctx, st.Issue, acs.Options{Reprovision: *reprovision, Roots: st.Roots, Progress: prog.step})
		if issued != nil {
			// Keep what was signed even when a later step failed: it was counted against the DAK.
			if rerr := writeRecord(tf.out, t.Name, issued, err == nil); rerr != nil && err == nil {
				err = rerr
			}
			o.Facts["sha256"] = pki.Fingerprint(issued.Certificate)
		}
		st := s.Console().Stats()
		o.Facts["tx_bytes"] = strconv.FormatInt(st.TxBytes, 10)
		o.Facts["rx_bytes"] = strconv.FormatInt(st.RxBytes, 10)
		if err == nil {
			prog.step(t.Name, "provisioned")
		} else {
			prog.step(t.Name, "FAILED: "+err.Error())
		}
		return err
	})
	return finish(rep, dir, stdout)
}

// record is what a provisioned device's identity leaves on the station: enough to verify it later
// and to write control logs and barcodes (seeds 001, 002).
type record struct {
	Target              string    `json:"target"`
	Complete            bool      `json:"complete"` // false: issued but not (yet) stored and verified on the device
	Issued              time.Time `json:"issued"`
	Subject             string    `json:"subject"`
	Issuer              string    `json:"issuer"`
	Serial              string    `json:"serial"`
	NotBefore           time.Time `json:"not_before"`
	NotAfter            time.Time `json:"not_after"`
	SHA256              string    `json:"sha256"`
	ControlLogPublicKey string    `json:"control_log_public_key"`
	BarcodePublicKey    string    `json:"barcode_public_key"`
	Chain               string    `json:"chain_file"`
}

func recordDir(out, target string) string { return filepath.Join(out, "devices", target) }

func writeRecord(out, target string, is *pki.Issued, complete bool) error {
	dir := recordDir(out, target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	chainFile := filepath.Join(dir, "chain.pem")
	if err := writeFileAtomic(chainFile, is.ChainPEM); err != nil {
		return err
	}
	compressed, err := pki.CompressedPublicKey(is.Certificate.PublicKey)
	if err != nil {
		return err
	}
	c := is.Certificate
	rec := record{
		Target: target, Complete: complete, Issued: time.Now().UTC(),
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, SHA256: pki.Fingerprint(c),
		ControlLogPublicKey: pki.ControlLogPublicKey(c), BarcodePublicKey: compressed, Chain: chainFile,
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "record.json"), append(data, '\n'))
}

// writeFileAtomic never leaves a half-written record behind a crash or power cut of the station.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	var tf targetFlags
	tf.register(fs)
	reboot := fs.Bool("reboot", false, "reboot each device and verify again")
	reset := fs.Bool("factory-reset", false, "factory-reset each device (wipes its user data) and verify again")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b, targets, err := tf.load()
	if err != nil {
		return err
	}
	roots, err := station.Roots(b)
	if err != nil {
		return err
	}
	start := time.Now()
	dir, err := runDir(tf.out, "verify", start)
	if err != nil {
		return err
	}
	prog := &progress{w: stdout, start: start}
	rep := report.New("verify", start)
	forEach(ctx, targets, tf.jobs, rep, "verify", func(ctx context.Context, t *bench.Target, o *report.Outcome) error {
		var err error
		if t.Family == bench.FamilyACK {
			err = verifyACK(ctx, t, dir, tf.out, roots, *reboot, *reset, prog, o)
		} else {
			var s *acs.Session
			if s, err = acs.Open(ctx, t, dir, console.NewRedactor()); err != nil {
				return err
			}
			defer s.Close()
			err = verifyTarget(ctx, s, tf.out, roots, *reboot, *reset, prog, o)
		}
		if err == nil {
			prog.step(t.Name, "verified")
		} else {
			prog.step(t.Name, "FAILED: "+err.Error())
		}
		return err
	})
	return finish(rep, dir, stdout)
}

// verifyTarget checks the device's chain against the station's record of it (when there is one),
// then after each requested restart checks the chain is still the identical one.
func verifyTarget(ctx context.Context, s *acs.Session, out string, roots []*x509.Certificate,
	reboot, reset bool, prog *progress, o *report.Outcome) error {
	opts := acs.Options{Roots: roots}
	if err := s.Sync(ctx); err != nil {
		return err
	}
	prog.step(s.Name(), acs.StepReadBack)
	chain, err := s.ReadChain(ctx)
	if err != nil {
		return &acs.StepError{Target: s.Name(), Step: acs.StepReadBack, Err: err}
	}
	want := &pki.Issued{Chain: chain, Certificate: chain[0], CSR: &x509.CertificateRequest{PublicKey: chain[0].PublicKey}}
	if data, err := os.ReadFile(filepath.Join(recordDir(out, s.Name()), "chain.pem")); err == nil {
		recorded, err := pki.ParseChainPEM(data)
		if err != nil {
			return fmt.Errorf("station record for %s is damaged: %w", s.Name(), err)
		}
		want = &pki.Issued{Chain: recorded, Certificate: recorded[0], CSR: &x509.CertificateRequest{PublicKey: recorded[0].PublicKey}}
		o.Facts["record"] = "matched"
	} else {
		o.Facts["record"] = "none"
	}
	if err := s.Verify(ctx, want, opts); err != nil {
		return err
	}
	o.Facts["sha256"] = pki.Fingerprint(chain[0])
	var done []string
	if reboot {
		prog.step(s.Name(), acs.StepReboot)
		if err := s.Reboot(ctx); err != nil {
			return err
		}
		if err := s.Verify(ctx, want, opts); err != nil {
			return err
		}
		done = append(done, "reboot")
	}
	if reset {
		prog.step(s.Name(), acs.StepReset)
		if err := s.FactoryReset(ctx); err != nil {
			return err
		}
		if err := s.Verify(ctx, want, opts); err != nil {
			return err
		}
		done = append(done, "factory-reset")
	}
	if len(done) > 0 {
		o.Facts["survived"] = strings.Join(done, ",")
	}
	return nil
}

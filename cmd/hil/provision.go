package main

import (
	"context"
	"crypto/x509"
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
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/report"
	"hilbench/harness/station"
	"hilbench/targets"
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
		list := make([]*bench.Target, len(b.Targets))
		for i := range b.Targets {
			list[i] = &b.Targets[i]
		}
		return b, list, nil
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
func forEach(ctx context.Context, list []*bench.Target, jobs int, rep *report.Report, op string,
	fn func(ctx context.Context, t *bench.Target, o *report.Outcome) error) {
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for _, t := range list {
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
				var se *device.StepError
				if errors.As(err, &se) {
					o.Step, o.Error = se.Step, se.Err.Error()
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

// deviceEnv is what opening the bench's devices needs: the run directory for transcripts and the
// product profile (ACK modules build their CSR subject from it; when an agent signs, the station
// has no profile of its own and the bench's is read here).
func deviceEnv(b *bench.Bench, st *station.Station, dir string) (targets.Env, error) {
	env := targets.Env{Dir: dir}
	if st != nil {
		env.Profile = st.Profile
	}
	if env.Profile == nil && b.Profile.DeviceConf != "" {
		p, err := station.LoadProfile(b)
		if err != nil {
			return env, err
		}
		env.Profile = p
	}
	return env, nil
}

// openDevice opens a target with a redactor of its own.
func openDevice(ctx context.Context, t *bench.Target, env targets.Env) (device.Device, error) {
	env.Redactor = console.NewRedactor()
	return targets.Open(ctx, t, env)
}

// statsFacts puts a device's line statistics into the report (a noisy line shows as
// retransmissions).
func statsFacts(o *report.Outcome, st device.Stats) {
	for k, v := range st {
		o.Facts[k] = strconv.FormatInt(v, 10)
	}
}

func cmdProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("provision", "--bench FILE (--target NAME | --all) [flags]\n\nGive devices their DHA identity: key generated on the device, CSR checked, certificate\nsigned by the DAK and recorded in the ledger, chain written back and read back.\nExit status 1 when any target failed.", stdout)
	var tf targetFlags
	tf.register(fs)
	reprovision := fs.Bool("reprovision", false, "replace the identity of devices that already have one")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b, tgts, err := tf.load()
	if err != nil {
		return err
	}
	st, err := station.Open(ctx, b, time.Now())
	if err != nil {
		return err
	}
	defer st.Close()
	printProfileNotes(stderr, st.Profile)

	start := time.Now()
	dir, err := runDir(tf.out, "provision", start)
	if err != nil {
		return err
	}
	st.SetRun(filepath.Base(dir)) // ledger records name the run whose report and transcripts tell more
	env, err := deviceEnv(b, st, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "provisioning %d target(s) with %s\n", len(tgts), st.Description())
	prog := &progress{w: stdout, start: start}
	rep := report.New("provision", start)
	opts := device.Options{Reprovision: *reprovision, Progress: prog.step}
	forEach(ctx, tgts, tf.jobs, rep, "provision", func(ctx context.Context, t *bench.Target, o *report.Outcome) error {
		err := provisionOne(ctx, t, env, st.Issuer, opts, prog, o)
		if err != nil {
			prog.step(t.Name, "FAILED: "+err.Error())
		}
		return err
	})
	return finish(rep, dir, stdout)
}

// provisionOne gives one device its identity; the station's Issuer records it in the ledger.
func provisionOne(ctx context.Context, t *bench.Target, env targets.Env, iss device.Issuer, opts device.Options,
	prog *progress, o *report.Outcome) error {
	d, err := openDevice(ctx, t, env)
	if err != nil {
		return err
	}
	defer d.Close()
	res, err := d.Provision(ctx, iss, opts)
	statsFacts(o, d.Stats())
	if res != nil {
		if is := res.Issued; is != nil && is.Certificate != nil {
			// What the product's records need of the identity (the FFS manufacturing and provisioning guides); the ledger
			// holds the chain itself.
			o.Facts["sha256"] = pki.Fingerprint(is.Certificate)
			o.Facts["serial"] = is.Certificate.SerialNumber.Text(16)
			o.Facts["control_log_public_key"] = pki.ControlLogPublicKey(is.Certificate)
			if k, err := pki.CompressedPublicKey(is.Certificate.PublicKey); err == nil {
				o.Facts["barcode_public_key"] = k
			}
		}
		o.Facts["already"] = strconv.FormatBool(res.Already)
		o.Facts["reused"] = strconv.FormatBool(res.Reused)
		for k, v := range res.Facts {
			o.Facts[k] = v
		}
	}
	switch {
	case err != nil:
	case res.Already:
		prog.step(t.Name, "already provisioned (ledger record matches)")
	case res.Reused:
		prog.step(t.Name, "provisioned (the chain recorded for its key, no new signature)")
	default:
		prog.step(t.Name, "provisioned")
	}
	return err
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", "--bench FILE (--target NAME | --all) [--reboot] [--factory-reset] [flags]\n\nRead each identity back and verify it against the ledger's record (and again after\nreboot / factory reset). Exit status 1 when any target failed.", stdout)
	var tf targetFlags
	tf.register(fs)
	reboot := fs.Bool("reboot", false, "reboot each device and verify again")
	reset := fs.Bool("factory-reset", false, "factory-reset each device (wipes its user data) and verify again")
	var mf mtlsFlags
	mf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b, tgts, err := tf.load()
	if err != nil {
		return err
	}
	if err := mf.check(b); err != nil {
		return err
	}
	// The ledger's record of each device comes through the station's Issuer.
	st, err := station.Open(ctx, b, time.Now())
	if err != nil {
		return err
	}
	defer st.Close()
	printProfileNotes(stderr, st.Profile)
	if err := mf.open(st); err != nil {
		return err
	}
	start := time.Now()
	dir, err := runDir(tf.out, "verify", start)
	if err != nil {
		return err
	}
	env, err := deviceEnv(b, st, dir)
	if err != nil {
		return err
	}
	prog := &progress{w: stdout, start: start}
	rep := report.New("verify", start)
	forEach(ctx, tgts, tf.jobs, rep, "verify", func(ctx context.Context, t *bench.Target, o *report.Outcome) error {
		d, err := openDevice(ctx, t, env)
		if err == nil {
			err = verifyDevice(ctx, d, st.Issuer, *reboot, *reset, prog, o)
			if err == nil {
				err = mf.run(ctx, d, prog, o)
			}
			statsFacts(o, d.Stats())
			d.Close()
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

// verifyDevice checks the chain a device holds against the ledger's record of its key: with a
// record ("record: matched") it must be the recorded chain byte for byte; without one ("record:
// none") only its path to the roots is checked. After each requested restart the device must hold
// the identical chain.
func verifyDevice(ctx context.Context, d device.Device, iss device.Issuer, reboot, reset bool, prog *progress, o *report.Outcome) error {
	name := d.Name()
	var want *pki.Issued
	var first []*x509.Certificate
	check := func() error {
		prog.step(name, device.StepReadBack)
		chain, err := d.ReadChain(ctx)
		if err != nil {
			return device.Fail(name, device.StepReadBack, err)
		}
		if first == nil {
			first = chain
			k, err := iss.Lookup(ctx, chain[0].PublicKey)
			if err != nil {
				return device.Fail(name, device.StepRecord, fmt.Errorf("ledger lookup of the device key: %w", err))
			}
			switch {
			case k.Live() && k.Issued != nil:
				want = k.Issued
				o.Facts["record"] = "matched"
			case k != nil && !k.Live():
				o.Facts["record"] = "replaced"
				return device.Fail(name, device.StepVerify, fmt.Errorf("the ledger records certificate %s as replaced: the device holds an identity that is no longer its own",
					pki.Fingerprint(chain[0])))
			default:
				o.Facts["record"] = "none"
			}
			o.Facts["sha256"] = pki.Fingerprint(chain[0])
		} else if !device.SameChain(chain, first) {
			return device.Fail(name, device.StepReadBack, fmt.Errorf("%w: the device holds certificate %s now, %s before",
				device.ErrChainMismatch, pki.Fingerprint(chain[0]), pki.Fingerprint(first[0])))
		}
		prog.step(name, device.StepVerify)
		if err := device.VerifyStep(name, chain, want, iss.Roots(), time.Now()); err != nil {
			if want != nil {
				o.Facts["record"] = "mismatch"
			}
			return err
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	var done []string
	if reboot {
		prog.step(name, device.StepReboot)
		if err := d.Reboot(ctx); err != nil {
			return device.Fail(name, device.StepReboot, err)
		}
		if err := check(); err != nil {
			return err
		}
		done = append(done, "reboot")
	}
	if reset {
		prog.step(name, device.StepReset)
		if err := d.FactoryReset(ctx); err != nil {
			return device.Fail(name, device.StepReset, err)
		}
		if err := check(); err != nil {
			return err
		}
		done = append(done, "factory-reset")
	}
	if len(done) > 0 {
		o.Facts["survived"] = strings.Join(done, ",")
	}
	return nil
}

// printProfileNotes prints what the profile's reading noted (a device type
// field found under another capitalisation) as warnings.
func printProfileNotes(w io.Writer, p *pki.Profile) {
	if p == nil {
		return
	}
	for _, n := range p.Notes {
		fmt.Fprintln(w, "warning:", n)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hilbench/harness/atomicfile"
	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/ledger"
	"hilbench/harness/plan"
	"hilbench/harness/station"
	stationrun "hilbench/harness/station/run"
	"hilbench/harness/station/web"
	"hilbench/harness/testrecord"
	"hilbench/targets"
)

func cmdStation(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("station", "--bench FILE --plan PLAN [--listen 127.0.0.1:8080] [--operator ID] [--max-duts N] [flags]\n\n"+
		"The end-of-line station: every target of the bench is a slot, and all slots run the test plan\n"+
		"at once and continuously (wait for a DUT, test it, PASS or FAIL, wait for its removal, the\n"+
		"next). A test record per DUT goes to the ledger and to OUT/records/ID/record.json, the batch's\n"+
		"JUnit XML to OUT/runs/RUN/junit.xml. Ctrl-C lets the DUTs in flight finish; a second Ctrl-C\n"+
		"aborts them (recorded ABORTED). Tests a killed station left running are recorded ABORTED at\n"+
		"the next start. Exit status 1 when the station itself failed (not when a DUT failed).", stdout)
	benchFile := fs.String("bench", "", "bench file (YAML); every target is a slot")
	planFile := fs.String("plan", "", "test plan (YAML; see fixtures/plans/example.yaml)")
	listen := fs.String("listen", "", "serve the operator page on this address (127.0.0.1:8080; another address needs the token from $HIL_STATION_TOKEN, or one is made and written to the state directory)")
	operator := fs.String("operator", "", "operator id recorded with each test (the page can change it)")
	maxDUTs := fs.Int("max-duts", 0, "stop after this many DUTs have been tested (0: run until Ctrl-C)")
	name := fs.String("station", "", "the station's name in records (default: the host name)")
	out := fs.String("out", "", "output directory (default: the bench file's output)")
	probeEvery := fs.Duration("probe-every", 500*time.Millisecond, "how often an empty slot is probed for a DUT")
	probeTimeout := fs.Duration("probe-timeout", 2*time.Second, "how long a probe waits for a DUT's console to answer")
	display := fs.String("display", "auto", "terminal mode: auto (in place on a terminal, lines otherwise), tty, lines, off")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *benchFile == "" || *planFile == "" {
		return fmt.Errorf("%w: --bench FILE and --plan PLAN are required", errUsage)
	}
	if *maxDUTs < 0 {
		return fmt.Errorf("%w: --max-duts must be 0 or more", errUsage)
	}
	if *probeEvery <= 0 || *probeTimeout <= 0 {
		return fmt.Errorf("%w: --probe-every and --probe-timeout must be positive", errUsage)
	}
	if *operator != "" {
		if err := web.ValidOperator(*operator); err != nil {
			return fmt.Errorf("%w: --operator: %v", errUsage, err)
		}
	}
	o := stationOptions{bench: *benchFile, plan: *planFile, listen: *listen, operator: *operator, maxDUTs: *maxDUTs,
		name: *name, out: *out, probeEvery: *probeEvery, probeTimeout: *probeTimeout, display: *display != "off"}
	switch *display {
	case "auto":
		f, ok := stdout.(*os.File)
		if ok {
			_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
			o.tty = err == nil
		}
	case "tty":
		o.tty = true
	case "lines", "off":
	default:
		return fmt.Errorf("%w: --display %q: auto, tty, lines or off", errUsage, *display)
	}
	return runStation(ctx, o, stdout, stderr)
}

// stationOptions are hil station's choices (flags; tests set hook).
type stationOptions struct {
	bench, plan, listen, operator, name, out string
	maxDUTs                                  int
	probeEvery, probeTimeout                 time.Duration
	display, tty                             bool
	// hook, when set, is handed the runner before it runs (tests watch and steer it).
	hook func(*stationrun.Runner)
}

// runStation opens the bench's station and runs its slots until drained or --max-duts.
func runStation(ctx context.Context, o stationOptions, stdout, stderr io.Writer) error {
	pl, err := plan.Load(o.plan)
	if err != nil {
		return err
	}
	b, err := bench.Load(o.bench)
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = b.Output
	}
	if pl.Release == plan.ReleasePowerOff {
		for _, t := range b.Targets {
			if t.Power == nil {
				return fmt.Errorf("%s: the plan releases slots by switching their power off, and the bench gives target %s no power section", o.plan, t.Name)
			}
		}
	}
	slots := make([]*bench.Target, len(b.Targets))
	for i := range b.Targets {
		slots[i] = &b.Targets[i]
	}
	// Two stations on one bench's ports: refused here, before the signer is opened.
	hold, err := stationrun.LockPorts(slots)
	if err != nil {
		return err
	}
	defer hold.Close()

	st, err := station.Open(ctx, b, time.Now())
	if err != nil {
		return err
	}
	defer st.Close()
	printProfileNotes(stderr, st.Profile)
	env, err := deviceEnv(b, st, "")
	if err != nil {
		return err
	}
	open := func(ctx context.Context, t *bench.Target, dir string) (device.Device, error) {
		e := env
		e.Dir = dir
		e.Redactor = console.NewRedactor()
		return targets.Open(ctx, t, e)
	}

	var store ledger.Store
	if st.Pipeline != nil {
		store = st.Pipeline.Ledger
	} else {
		// An agent signs: the test runs go to the bench's ledger all the same.
		if store, err = ledger.Open(ctx, b.Ledger, b.Output); err != nil {
			return err
		}
		defer store.Close()
	}
	runID := time.Now().UTC().Format("20060102T150405.000Z") + "-station"
	st.SetRun(runID)
	cfg := stationrun.Config{
		Station: o.name, Operator: o.operator, RunID: runID, Plan: pl, Targets: slots,
		Issuer: st.Issuer, Ledger: store, Out: o.out, Open: open,
		Signer: st.Description(), MaxDUTs: o.maxDUTs, ProbeEvery: o.probeEvery, ProbeTimeout: o.probeTimeout,
		HoldPorts: func([]*bench.Target) (io.Closer, error) { return io.NopCloser(nil), nil }, // held above
		Logf:      func(format string, a ...any) { fmt.Fprintf(stderr, "station: "+format+"\n", a...) },
	}
	if cfg.Station == "" {
		cfg.Station = station.StationID()
	}
	if p := st.Pipeline; p != nil {
		cfg.DAKFingerprint = p.DAKSHA256()
		cfg.SignaturesLeft = func() int64 {
			if p.MaxSignatures <= 0 {
				return -1
			}
			bud, err := p.Ledger.Budget(context.Background(), p.DAKSHA256())
			if err != nil {
				return -1
			}
			return max(p.MaxSignatures-bud.Used, 0)
		}
	}
	var disp *stationrun.Display
	if o.display {
		disp = stationrun.NewDisplay(stdout, o.tty)
		cfg.Display = disp
	}
	var srv *web.Server
	if o.listen != "" {
		token := os.Getenv("HIL_STATION_TOKEN")
		if token == "" && !web.IsLoopback(o.listen) {
			// The token is a secret: it goes to a file only its owner reads, never to the
			// terminal or a log.
			token = web.NewToken()
			file := filepath.Join(station.StateDir(b), "station-token")
			if err := atomicfile.Write(file, []byte(token+"\n"), 0o600); err != nil {
				return fmt.Errorf("writing the operator page's token: %w", err)
			}
			fmt.Fprintf(stdout, "operator page token in %s (open the page once with ?token=<token>; or set $HIL_STATION_TOKEN)\n", file)
		}
		// run.New publishes nothing; srv is set before Run's first snapshot.
		cfg.Publish = func(sn web.Snapshot) { srv.Publish(sn) }
		runner, err := stationrun.New(cfg)
		if err != nil {
			return err
		}
		srv = web.New(runner, web.Options{Token: token})
		return serveAndRun(ctx, runner, srv, o, stdout, stderr, disp)
	}
	runner, err := stationrun.New(cfg)
	if err != nil {
		return err
	}
	return serveAndRun(ctx, runner, nil, o, stdout, stderr, disp)
}

func serveAndRun(ctx context.Context, r *stationrun.Runner, srv *web.Server, o stationOptions, stdout, stderr io.Writer, disp *stationrun.Display) error {
	recovered, err := r.Recover(ctx)
	for _, rec := range recovered {
		fmt.Fprintf(stdout, "test %s (slot %s, DUT %s) was left running by a station that stopped: recorded ABORTED\n", rec.ID, rec.Slot, unknownIfEmpty(rec.DUTID))
	}
	if err != nil {
		return err
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	// The first Ctrl-C (main's context) drains; a second one aborts the DUTs in flight.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for {
			select {
			case <-sigs:
				n++
				if n == 1 {
					fmt.Fprintln(stderr, "station: draining: the DUTs in flight finish, no new one starts (Ctrl-C again aborts them)")
					r.Drain()
				} else {
					fmt.Fprintln(stderr, "station: aborting the DUTs in flight")
					r.Abort()
				}
			case <-runCtx.Done():
				return
			}
		}
	}()
	if srv != nil {
		ln, err := srv.Listen(o.listen)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "operator page: http://%s/\n", ln.Addr())
		sctx, stop := context.WithCancel(context.Background())
		defer stop()
		go func() {
			if err := srv.ServeListener(sctx, ln); err != nil && sctx.Err() == nil {
				fmt.Fprintf(stderr, "station: the operator page stopped: %v\n", err)
			}
		}()
	}
	if o.tty && disp != nil {
		// The elapsed times on a terminal move every second.
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					disp.Show(r.Snapshot())
				case <-runCtx.Done():
					return
				}
			}
		}()
	}
	if o.hook != nil {
		o.hook(r)
	}
	recs, err := r.Run(ctx)
	cancelRun()
	counts := map[string]int{}
	for _, rec := range recs {
		counts[rec.Outcome]++
	}
	fmt.Fprintf(stdout, "station: %d DUT(s): %d PASS, %d FAIL, %d ERROR, %d ABORTED; JUnit XML: %s\n", len(recs),
		counts[testrecord.Pass], counts[testrecord.Fail], counts[testrecord.Error], counts[testrecord.Aborted], r.JUnitPath())
	fmt.Fprintf(stdout, "records: %s\n", filepath.Dir(r.RecordDir("x")))
	return err
}

func unknownIfEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return s
}

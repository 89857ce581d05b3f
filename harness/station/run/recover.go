package run

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"hilbench/harness/ledger"
	"hilbench/harness/testrecord"
)

// Recover ends the tests a dead run of this station left RUNNING in the ledger: each is
// recorded ABORTED (in the ledger and in its JSON record). The DUTs themselves are safe to test
// again: a device key the ledger issued for gets that chain back, never a second signature.
// It returns the records it ended.
func (r *Runner) Recover(ctx context.Context) ([]*testrecord.Record, error) {
	runs, err := r.cfg.Ledger.ListTests(ctx, ledger.TestFilter{Station: r.cfg.Station, Outcome: ledger.TestRunning})
	if err != nil {
		return nil, fmt.Errorf("station %s: tests left running: %w", r.cfg.Station, err)
	}
	var out []*testrecord.Record
	var errs []error
	for _, tr := range runs {
		rec, perr := testrecord.Parse(tr.Record)
		if perr != nil {
			rec = testrecord.New(tr.ID, tr.DUTID, tr.Station, tr.Slot, tr.Operator, tr.RunID, r.cfg.Plan.Name, tr.StartedAt)
		}
		rec.Outcome = testrecord.Aborted
		rec.EndedAt = r.cfg.Now().UTC()
		rec.Message = "the station stopped during this test (found RUNNING at the next start)"
		if rec.FailedPhase == "" && len(rec.Phases) > 0 {
			rec.FailedPhase = rec.Phases[len(rec.Phases)-1].Name
		}
		b, err := rec.JSON()
		if err == nil {
			err = r.cfg.Ledger.EndTest(ctx, tr.ID, ledger.TestAborted, rec.EndedAt, b)
			if errors.Is(err, ledger.ErrNotRunning) {
				continue // another start ended it first
			}
		}
		if err == nil && idRE.MatchString(tr.ID) {
			err = rec.WriteFile(filepath.Join(r.RecordDir(tr.ID), "record.json"))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("ending test %s: %w", tr.ID, err))
			continue
		}
		out = append(out, rec)
	}
	return out, errors.Join(errs...)
}

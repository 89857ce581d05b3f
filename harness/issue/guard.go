package issue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"hilbench/harness/signer/budget"
)

// ErrLedgerBehind: the ledger counts fewer signatures for the DAK than its other evidence (the
// audit log, a budget file) shows were made: it was deleted, replaced or rolled back.
var ErrLedgerBehind = errors.New("the ledger counts fewer signatures than the DAK made")

// CheckBudgetFloor refuses a ledger that counts fewer signatures for the DAK than the audit log
// records certificates: signing on would exceed the DAK's real budget.
func (p *Pipeline) CheckBudgetFloor(ctx context.Context) error {
	if p.Audit == nil {
		return nil
	}
	dak := p.DAKSHA256()
	b, err := p.Ledger.Budget(ctx, dak)
	if err != nil {
		return fmt.Errorf("reading the DAK budget from the ledger %s: %w", p.Ledger.Describe(), err)
	}
	if recorded := int64(p.Audit.CountDAK(dak)); b.Used < recorded {
		return fmt.Errorf("%w: the ledger %s counts %d signatures for DAK %q but the audit log %s records %d certificates it issued: "+
			"the ledger was deleted, replaced or rolled back; refusing to sign until it is restored (or rebuilt with `hil ledger import`)",
			ErrLedgerBehind, p.Ledger.Describe(), b.Used, p.Certs.CA.Subject, p.Audit.Path(), recorded)
	}
	return nil
}

// CheckLegacyBudget refuses a ledger that counts fewer signatures for the DAK than a budget
// counter file (the signature counter of earlier releases) at path. A missing file is fine.
func (p *Pipeline) CheckLegacyBudget(ctx context.Context, path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	bud, err := budget.Open(path, p.Certs.CA, 0)
	if err != nil {
		return fmt.Errorf("reading the earlier signature counter %s: %w", path, err)
	}
	used := bud.Used()
	bud.Close()
	b, err := p.Ledger.Budget(ctx, p.DAKSHA256())
	if err != nil {
		return fmt.Errorf("reading the DAK budget from the ledger %s: %w", p.Ledger.Describe(), err)
	}
	if b.Used < used {
		return fmt.Errorf("%w: the signature counter %s counts %d signatures for DAK %q, the ledger %s only %d: "+
			"bring the counter and its records into the ledger with `hil ledger import --bench FILE` before signing",
			ErrLedgerBehind, path, used, p.Certs.CA.Subject, p.Ledger.Describe(), b.Used)
	}
	return nil
}

// Close closes the ledger and the audit log, then releases the Owner lock.
func (p *Pipeline) Close() error {
	var errs []error
	if p.Ledger != nil {
		errs = append(errs, p.Ledger.Close())
	}
	if p.Audit != nil {
		errs = append(errs, p.Audit.Close())
	}
	if p.Owner != nil {
		errs = append(errs, p.Owner.Close())
	}
	return errors.Join(errs...)
}

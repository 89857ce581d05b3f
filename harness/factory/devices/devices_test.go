package devices

import (
	"context"
	"errors"
	"testing"

	"hilbench/harness/factory/internal/factorytest"
	"hilbench/harness/ledger"
)

// TestOnlyVerifiedDevices: All returns the verified records, by device id, each with its chain;
// records not yet read back are left out.
func TestOnlyVerifiedDevices(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := factorytest.New(t)
	b := l.Add(t, "SN-B")
	a := l.Add(t, "SN-A")
	l.AddIn(t, "SN-C", ledger.Stored)
	l.AddIn(t, "SN-D", ledger.Reserved)
	got, err := All(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID() != "SN-A" || got[1].ID() != "SN-B" {
		t.Fatalf("All = %d devices %v, want SN-A, SN-B", len(got), got)
	}
	if !a.Key.PublicKey.Equal(got[0].Leaf().PublicKey) {
		t.Error("SN-A's leaf does not hold SN-A's key")
	}
	one, err := One(ctx, l, b.Record.DeviceKey)
	if err != nil || one.ID() != "SN-B" {
		t.Errorf("One(by key) = %v, %v", one.ID(), err)
	}
	if _, err := One(ctx, l, "SN-C"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("One(stored, not verified) = %v, want ErrNoDevice", err)
	}
}

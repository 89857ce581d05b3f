package devices

import (
	"context"
	"errors"
	"strings"
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
	got, err := All(ctx, l, Verified)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID() != "SN-A" || got[1].ID() != "SN-B" {
		t.Fatalf("All = %d devices %v, want SN-A, SN-B", len(got), got)
	}
	if !a.Key.PublicKey.Equal(got[0].Leaf().PublicKey) {
		t.Error("SN-A's leaf does not hold SN-A's key")
	}
	one, err := One(ctx, l, b.Record.DeviceKey, Verified)
	if err != nil || one.ID() != "SN-B" {
		t.Errorf("One(by key) = %v, %v", one.ID(), err)
	}
	if _, err := One(ctx, l, "SN-C", Verified); !errors.Is(err, ErrNoDevice) {
		t.Errorf("One(stored, not verified) = %v, want ErrNoDevice", err)
	}
	// Unverified takes issued and stored records too, never reserved ones (no chain yet).
	l.AddIn(t, "SN-E", ledger.Issued)
	got, err = All(ctx, l, Unverified)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID())
	}
	if strings.Join(ids, ",") != "SN-A,SN-B,SN-C,SN-E" {
		t.Errorf("All(Unverified) = %v", ids)
	}
	if d, err := One(ctx, l, "SN-C", Unverified); err != nil || d.ID() != "SN-C" {
		t.Errorf("One(stored, Unverified) = %v, %v", d.ID(), err)
	}
}

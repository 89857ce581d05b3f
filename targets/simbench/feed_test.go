package simbench

import (
	"context"
	"testing"
	"time"

	"hilbench/harness/power"
)

// TestFeedSwapsBoards: switching a feeding slot off for longer than the grace takes its board
// out; the next one comes with a new serial, powered; a short power cycle keeps the board; after
// the last board the slot stays empty and refuses power.
func TestFeedSwapsBoards(t *testing.T) {
	t.Parallel()
	sb, err := Start(t.TempDir(), Options{Devices: 1, BootDelay: 20 * time.Millisecond, Feed: 2,
		InsertDelay: 50 * time.Millisecond, RemoveGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx := context.Background()
	pw, err := power.ForTarget(&sb.Bench.Targets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer power.Close(pw)
	slot := sb.Slots[0]
	first := slot.Serial()
	if first == "" || !slot.Powered() {
		t.Fatalf("first board: serial %q, powered %v", first, slot.Powered())
	}
	if err := pw.Cycle(ctx); err != nil { // 200 ms off: not a removal
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if s := slot.Serial(); s != first || !slot.Powered() {
		t.Fatalf("after a power cycle: serial %q (was %q), powered %v", s, first, slot.Powered())
	}
	if err := pw.Off(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for slot.Serial() == first || slot.Serial() == "" || !slot.Powered() {
		if time.Now().After(deadline) {
			t.Fatalf("no second board: serial %q, powered %v", slot.Serial(), slot.Powered())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := slot.Device().Serial(); got != slot.Serial() {
		t.Errorf("the device's serial_number holds %q, the slot says %q", got, slot.Serial())
	}
	if err := pw.Off(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-slot.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the last board never left")
	}
	if err := pw.On(ctx); err == nil {
		t.Error("an empty slot switched on")
	}
	if n := len(slot.Presented()); n != 2 {
		t.Errorf("%d boards presented, want 2", n)
	}
}

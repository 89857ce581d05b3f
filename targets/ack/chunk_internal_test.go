package ack

import "testing"

func TestChunkSizer(t *testing.T) {
	c := newChunkSizer(256)
	if c.size != 256 || c.sends() != chunkSends {
		t.Fatalf("start: size %d, sends %d", c.size, c.sends())
	}
	for _, want := range []int{128, 64, 32} {
		if !c.shrink() || c.size != want {
			t.Fatalf("shrink: size %d, want %d", c.size, want)
		}
	}
	if c.shrink() || c.size != 32 || c.sends() != MaxSends {
		t.Fatalf("at the floor: size %d, sends %d; want 32 and all %d sends", c.size, c.sends(), MaxSends)
	}
	c.answered(1)
	c.answered(2) // a resend breaks the clean run
	c.answered(1)
	if c.size != 32 {
		t.Fatalf("grew after a resend broke the run: size %d", c.size)
	}
	for range cleanChunks * 3 {
		c.answered(1)
	}
	if c.size != 256 {
		t.Fatalf("after clean exchanges: size %d, want back at 256", c.size)
	}
	c.answered(1)
	if c.size != 256 {
		t.Fatalf("grew past max_chunk: %d", c.size)
	}
	if small := newChunkSizer(16); small.floor != 16 || small.shrink() {
		t.Fatalf("max_chunk below the floor: floor %d", small.floor)
	}
}

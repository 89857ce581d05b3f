package ack

import (
	"context"
	"errors"
)

// Chunk sizes adapt to the line. A long frame on a noisy line is damaged more often than it gets
// through: at a byte error rate of 3e-3 a 256-byte chunk (about 400 bytes of frame and answer)
// arrives intact about 30% of the time, so 8 sends all fail about 6% of the time, while a 32-byte
// chunk gets through about 70% of the time. On a quieter line long chunks are cheaper (fewer round
// trips): at 1e-3, fixed 256-byte chunks took 0.98 s a module, 128-byte ones 1.06 s and 64-byte
// ones 1.20 s. So chunks start at the module's max_chunk, halve when chunkSends sends got answers
// but none intact, and double again after cleanChunks exchanges in a row that needed no resend.
const (
	minChunk    = 32
	cleanChunks = 2
	// chunkSends is how often a chunk longer than the minimum is sent before it is tried shorter.
	chunkSends = 4
)

type chunkSizer struct {
	max, floor, size, clean int
}

func newChunkSizer(max int) *chunkSizer {
	return &chunkSizer{max: max, floor: min(minChunk, max), size: max}
}

// sends is the send budget of one chunk: a few at a size that can still shrink, all at the floor.
func (c *chunkSizer) sends() int {
	if c.size > c.floor {
		return chunkSends
	}
	return MaxSends
}

// shrink halves the size; false when it is already at the floor.
func (c *chunkSizer) shrink() bool {
	c.clean = 0
	if c.size <= c.floor {
		return false
	}
	c.size = max(c.size/2, c.floor)
	return true
}

// answered takes note of a chunk that took sends sends.
func (c *chunkSizer) answered(sends int) {
	if sends > 1 {
		c.clean = 0
		return
	}
	if c.clean++; c.clean >= cleanChunks && c.size < c.max {
		c.size, c.clean = min(2*c.size, c.max), 0
	}
}

// exchangeChunk sends one chunk request, built by build for the current size. When the line was
// too noisy for a chunk that long (the module answered, but never intact), it is built again
// shorter and sent again. It returns the size the answer is for.
func (t *Transport) exchangeChunk(ctx context.Context, c *chunkSizer, verb string, build func(size int) []byte) (Frame, int, error) {
	for {
		size := c.size
		ans, sends, err := t.exchangeUpTo(ctx, verb, build(size), c.sends())
		var na *NoAnswerError
		if errors.As(err, &na) && na.Heard() && c.shrink() {
			t.count(func(s *Stats) { s.Shrinks++; s.Retransmissions++ }) // the data goes again, shorter
			continue
		}
		if err == nil {
			c.answered(sends)
		}
		return ans, size, err
	}
}

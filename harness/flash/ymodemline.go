package flash

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	errTimeout    = errors.New("timeout")
	errGarbled    = errors.New("garbled answer")
	errLineClosed = errors.New("line closed")
)

// next returns the next received byte, waiting at most d.
func (s *sender) next(d time.Duration) (byte, error) {
	for len(s.pend) == 0 {
		p, err := s.line.receive(s.ctx, d)
		if err != nil {
			return 0, err
		}
		s.pend = p
	}
	b := s.pend[0]
	s.pend = s.pend[1:]
	return b, nil
}

// purge drops what was received but not looked at, so that a stale answer
// is not taken for the answer to the block about to go out.
func (s *sender) purge() {
	s.st.Noise += len(s.pend)
	s.pend = nil
	for {
		p, err := s.line.receive(s.ctx, 0)
		if err != nil {
			return
		}
		s.st.Noise += len(p)
	}
}

// receiver is the line's receiving side as the sender sees it.
type receiver interface {
	// receive returns the next bytes received, waiting at most wait (0: only what has arrived).
	// Its errors: errTimeout when nothing came, one wrapping errLineClosed once the line is gone,
	// ctx's error when ctx ends.
	receive(ctx context.Context, wait time.Duration) ([]byte, error)
}

// chanReceiver receives from a channel a reader elsewhere fills; a closed channel is a line
// that is gone, for the reason lineErr gives (nil: unknown).
type chanReceiver struct {
	in      <-chan []byte
	lineErr func() error
}

func (r chanReceiver) receive(ctx context.Context, wait time.Duration) ([]byte, error) {
	select {
	case p, ok := <-r.in:
		return r.got(p, ok)
	default:
	}
	if wait <= 0 {
		return nil, errTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p, ok := <-r.in:
		return r.got(p, ok)
	case <-t.C:
		return nil, errTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r chanReceiver) got(p []byte, ok bool) ([]byte, error) {
	if ok {
		return p, nil
	}
	if r.lineErr != nil {
		if err := r.lineErr(); err != nil {
			return nil, fmt.Errorf("%w: %v", errLineClosed, err)
		}
	}
	return nil, errLineClosed
}

// ContextReader is a line that can be read with a deadline: SendYModem reads one directly, in
// its own goroutine, instead of through a reader goroutine and a channel, which at 921600 baud
// cost a tenth of each block's turnaround. Bytes already received must be returned even when
// ctx has ended.
type ContextReader interface {
	ReadContext(ctx context.Context, p []byte) (int, error)
}

// directReceiver reads a ContextReader in the sender's goroutine.
type directReceiver struct {
	r   ContextReader
	buf []byte
}

func (r *directReceiver) receive(ctx context.Context, wait time.Duration) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	n, err := r.r.ReadContext(rctx, r.buf)
	cancel()
	if n > 0 {
		p := make([]byte, n) // the sender keeps it while buf is read again
		copy(p, r.buf[:n])
		return p, nil
	}
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errTimeout
	case err == nil:
		return nil, errTimeout // no bytes, no error: nothing came
	}
	return nil, fmt.Errorf("%w: %v", errLineClosed, err)
}

// cancelled reads the byte after a CAN: a second CAN means the receiver
// cancelled. Anything else is put back.
func (s *sender) cancelled(deadline time.Time) (bool, error) {
	b, err := s.next(time.Until(deadline))
	switch {
	case errors.Is(err, errTimeout):
		return false, nil
	case err != nil:
		return false, err
	case b == can:
		return true, nil
	}
	s.pend = append([]byte{b}, s.pend...)
	return false, nil
}

// awaitC waits for the receiver's 'C'; other bytes are noise.
func (s *sender) awaitC(what string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	naks := 0
	for {
		b, err := s.next(time.Until(deadline))
		if errors.Is(err, errTimeout) {
			if naks > 0 {
				return fmt.Errorf("no 'C' within %s waiting for %s; got %d NAKs: the receiver wants checksum mode, only CRC mode is supported", timeout, what, naks)
			}
			return fmt.Errorf("no 'C' within %s waiting for %s", timeout, what)
		}
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		switch b {
		case crcReq:
			return nil
		case can:
			yes, err := s.cancelled(deadline)
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
			if yes {
				return fmt.Errorf("waiting for %s: %w", what, ErrReceiverCancelled)
			}
		case nak:
			naks++
		}
		s.st.Noise++
	}
}

// answer waits for ACK or NAK to what was just sent. A 'C' is ignored (a
// receiver repeats it while waiting to start); other bytes are garbage and
// shorten the wait to YModemOptions.GarbageWait.
func (s *sender) answer() (byte, error) {
	deadline := time.Now().Add(s.opts.BlockTimeout)
	garbled := false
	for {
		b, err := s.next(time.Until(deadline))
		if errors.Is(err, errTimeout) && garbled {
			return 0, errGarbled
		}
		if err != nil {
			return 0, err
		}
		switch b {
		case ack, nak:
			return b, nil
		case can:
			yes, err := s.cancelled(deadline)
			if err != nil {
				return 0, err
			}
			if yes {
				return 0, ErrReceiverCancelled
			}
		}
		s.st.Noise++
		if b != crcReq {
			garbled = true
			deadline = minTime(deadline, time.Now().Add(s.opts.GarbageWait))
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// missed counts an answer that was not an ACK (answer's err nil: a NAK) and says what it was, or
// returns the error that ends the transfer.
func (s *sender) missed(err error) (string, error) {
	switch {
	case err == nil:
		s.st.NAKs++
		return "NAK", nil
	case errors.Is(err, errTimeout):
		s.st.Timeouts++
		return fmt.Sprintf("no answer within %s", s.opts.BlockTimeout), nil
	case errors.Is(err, errGarbled):
		return "garbled answer", nil
	}
	return "", err
}

// sendBlock sends a block until it is acknowledged, resending on NAK,
// timeout and garbage.
func (s *sender) sendBlock(what string, f []byte) error {
	return s.sendBlockThen(what, f, nil)
}

// sendBlockThen is sendBlock that runs meanwhile (when not nil) once, right
// after the block's first write, while it crosses the line.
func (s *sender) sendBlockThen(what string, f []byte, meanwhile func()) error {
	for try := 0; ; try++ {
		if try > 0 {
			s.st.Retransmits++
		}
		s.purge()
		if _, err := s.w.Write(f); err != nil {
			return fmt.Errorf("writing %s: %w", what, err)
		}
		if meanwhile != nil {
			meanwhile()
			meanwhile = nil
		}
		b, err := s.answer()
		if err == nil && b == ack {
			return nil
		}
		last, err := s.missed(err)
		if err != nil {
			return fmt.Errorf("sending %s: %w", what, err)
		}
		if try >= s.opts.MaxRetries {
			return fmt.Errorf("%s not acknowledged after %d tries (last: %s)", what, try+1, last)
		}
	}
}

// sendEOT ends the file. Receivers NAK the first EOT to be sure it was no
// line noise (lrzsz ACKs it at once; both are fine).
func (s *sender) sendEOT() error {
	expectNAK, resend := true, false
	for try := 0; ; try++ {
		if resend {
			s.st.Retransmits++
		}
		s.purge()
		if _, err := s.w.Write([]byte{eot}); err != nil {
			return fmt.Errorf("writing EOT: %w", err)
		}
		b, err := s.answer()
		switch {
		case err == nil && b == ack:
			return nil
		case err == nil && expectNAK:
			expectNAK, resend = false, false
			continue
		}
		last, err := s.missed(err)
		if err != nil {
			return fmt.Errorf("sending EOT: %w", err)
		}
		resend = true
		if try >= s.opts.MaxRetries {
			return fmt.Errorf("end of file (EOT) not acknowledged after %d tries (last: %s)", try+1, last)
		}
	}
}

// abort tells the receiver to give up, as lrzsz does: CANs, then
// backspaces to erase them should they land on a shell.
func (s *sender) abort() {
	_, _ = s.w.Write([]byte{can, can, can, can, can, can, can, can, 8, 8, 8, 8, 8, 8, 8, 8})
}

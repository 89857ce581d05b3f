package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// YMODEM control bytes.
const (
	soh    = 0x01 // 128-byte block follows
	stx    = 0x02 // 1024-byte block follows
	eot    = 0x04
	ack    = 0x06
	nak    = 0x15
	can    = 0x18
	crcReq = 'C' // receiver wants CRC-16 blocks
	cpmEOF = 0x1A
)

// Defaults for YModemOptions.
const (
	// DefaultBlockTimeout: a block the receiver dropped (lrzsz flushes its input right after asking
	// for data) is sent again after this; a receiver still writing flash ACKs the repeat as a duplicate.
	DefaultBlockTimeout = 2 * time.Second
	DefaultStartTimeout = 60 * time.Second
	DefaultMaxRetries   = 10
)

// DefaultGarbageWait is how long an answer may still come once garbage
// arrived instead of ACK/NAK: a garbled answer should cost a resend, not a
// full BlockTimeout.
const DefaultGarbageWait = 500 * time.Millisecond

// ErrReceiverCancelled is returned (wrapped) when the receiver sent CAN CAN.
var ErrReceiverCancelled = errors.New("the receiver cancelled the transfer (CAN CAN)")

// YModemOptions tune SendYModem. The zero value is usable.
type YModemOptions struct {
	// ModTime, when set, goes into the header block (octal seconds).
	ModTime time.Time
	// Progress, when set, is called after each acknowledged data block.
	Progress func(sent, total int64)
	// BlockTimeout is how long to wait for the answer to a block.
	BlockTimeout time.Duration
	// StartTimeout is how long to wait for the receiver's 'C', before the
	// header and before the first data block (a receiver may erase flash
	// in between).
	StartTimeout time.Duration
	// MaxRetries is how often one block may be resent.
	MaxRetries int
	// GarbageWait is how long an answer may still come once garbage arrived instead of it
	// (default DefaultGarbageWait); then the block is sent again.
	GarbageWait time.Duration
}

// Stats describe a transfer.
type Stats struct {
	Bytes       int64 // payload bytes acknowledged
	Blocks      int   // data blocks acknowledged (not counting block 0s)
	Retransmits int   // blocks (and EOTs) sent again
	NAKs        int   // NAKs received, except the one expected for the first EOT
	Timeouts    int   // answers that did not come within BlockTimeout
	Noise       int   // received bytes that were not an expected answer
	// Duration runs from the receiver's first 'C' to the end of the batch.
	Duration time.Duration
	// Throughput is Bytes per second while data blocks flowed (header's
	// 'C' to the last data ACK): the line's rate, without the receiver's
	// pauses around EOT (lrzsz takes 2 s there).
	Throughput float64
}

// SendYModem sends data as one file called name to a YMODEM receiver
// (CRC-16 mode, 1024-byte blocks) on rw, then ends the batch.
//
// While it runs, SendYModem owns reads on rw. A ContextReader (harness/console's
// raw line, inside Console.Raw) is read directly. Any other rw is read by a
// goroutine of SendYModem's own, which may still be blocked in rw.Read when
// SendYModem returns (the bytes it then gets are dropped); if rw has
// SetReadDeadline (an *os.File pty, a net.Conn) SendYModem uses it to end that
// read before returning. SendYModemChan takes the bytes of a reader you already
// run.
func SendYModem(ctx context.Context, rw io.ReadWriter, name string, data []byte, opts YModemOptions) (Stats, error) {
	if cr, ok := rw.(ContextReader); ok {
		return newSender(ctx, rw, &directReceiver{r: cr, buf: make([]byte, 4096)}, opts).run(name, data)
	}
	in := make(chan []byte, 16)
	stop := make(chan struct{})
	done := make(chan struct{})
	var readErr error // written before close(in)
	go func() {
		defer close(done)
		for {
			buf := make([]byte, 4096)
			n, err := rw.Read(buf)
			if n > 0 {
				select {
				case in <- buf[:n]:
				case <-stop:
					return
				}
			}
			if err != nil {
				readErr = err
				close(in)
				return
			}
		}
	}()
	st, err := newSender(ctx, rw, chanReceiver{in: in, lineErr: func() error { return readErr }}, opts).run(name, data)
	close(stop)
	if d, ok := rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		if d.SetReadDeadline(time.Now()) == nil {
			// Some files accept a deadline and still block (a pty opened blocking): do not
			// wait for ever; the reader then drops what it gets.
			select {
			case <-done:
			case <-time.After(200 * time.Millisecond):
			}
			_ = d.SetReadDeadline(time.Time{})
		}
	}
	return st, err
}

// SendYModemChan is SendYModem for a line whose reads already run
// elsewhere: received bytes come from in (a closed in means the line is
// gone), writes go to w. SendYModemChan reads in only while it runs; what
// is left in it afterwards is the caller's.
func SendYModemChan(ctx context.Context, w io.Writer, in <-chan []byte, name string, data []byte, opts YModemOptions) (Stats, error) {
	return newSender(ctx, w, chanReceiver{in: in}, opts).run(name, data)
}

type sender struct {
	ctx    context.Context
	w      io.Writer
	dataT0 time.Time // 'C' after the header
	dataT1 time.Time // last data block acknowledged
	line   receiver
	pend   []byte // received, not yet looked at
	opts   YModemOptions
	st     Stats
	start  time.Time
}

func newSender(ctx context.Context, w io.Writer, line receiver, opts YModemOptions) *sender {
	if opts.BlockTimeout <= 0 {
		opts.BlockTimeout = DefaultBlockTimeout
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.GarbageWait <= 0 {
		opts.GarbageWait = DefaultGarbageWait
	}
	return &sender{ctx: ctx, w: w, line: line, opts: opts}
}

func (s *sender) run(name string, data []byte) (Stats, error) {
	err := s.transfer(name, data)
	if !s.start.IsZero() {
		s.st.Duration = time.Since(s.start)
	}
	if !s.dataT1.IsZero() {
		if secs := s.dataT1.Sub(s.dataT0).Seconds(); secs > 0 {
			s.st.Throughput = float64(s.st.Bytes) / secs
		}
	}
	if err != nil && !errors.Is(err, ErrReceiverCancelled) && !errors.Is(err, errLineClosed) {
		s.abort() // also on ctx errors: the receiver must not wait for us
	}
	if err != nil {
		return s.st, fmt.Errorf("ymodem send %q: %w", name, err)
	}
	return s.st, nil
}

func (s *sender) transfer(name string, data []byte) error {
	header, err := headerBlock(name, int64(len(data)), s.opts.ModTime)
	if err != nil {
		return err
	}
	if err := s.awaitC("the receiver to start (C)", s.opts.StartTimeout); err != nil {
		return err
	}
	s.start = time.Now()
	if err := s.sendBlock("header block 0", frame(0, header, 0)); err != nil {
		return err
	}
	if err := s.awaitC("the receiver to ask for data (C) after the header", s.opts.StartTimeout); err != nil {
		return err
	}
	s.dataT0 = time.Now()
	total := int64(len(data))
	// The next block is ready when the ACK lands and goes out at once: it is framed, and the
	// previous block's progress reported, while the block before it is on the line.
	blockAt := func(num, off int) []byte {
		return frame(byte(num), data[off:min(off+1024, len(data))], cpmEOF)
	}
	var next []byte
	if len(data) > 0 {
		next = blockAt(1, 0)
	}
	var report func() // the last acknowledged block's progress, not yet reported
	for off, num := 0, 1; off < len(data); num++ {
		f, n := next, min(len(data)-off, 1024)
		err := s.sendBlockThen(fmt.Sprintf("block %d (offset %d)", num, off), f, func() {
			if report != nil {
				report()
				report = nil
			}
			if off+n < len(data) {
				next = blockAt(num+1, off+n)
			}
		})
		if err != nil {
			return err
		}
		off += n
		s.st.Bytes, s.st.Blocks = int64(off), s.st.Blocks+1
		s.dataT1 = time.Now()
		if s.opts.Progress != nil {
			sent := int64(off)
			report = func() { s.opts.Progress(sent, total) }
		}
	}
	if report != nil {
		report()
	}
	if err := s.sendEOT(); err != nil {
		return err
	}
	if err := s.awaitC("the receiver to ask for the next file (C)", s.opts.BlockTimeout); err != nil {
		return err
	}
	s.opts.MaxRetries = 1 // a formality: see below
	err = s.sendBlock("end-of-batch block 0", frame(0, make([]byte, 128), 0))
	if err != nil && !errors.Is(err, ErrReceiverCancelled) && s.ctx.Err() == nil {
		// Every block and the EOT were acknowledged: the file is in. Receivers may leave at
		// once after the end of the batch (rb's ACK is lost as it exits, a target may reset and
		// take its USB serial port with it); whether the image is good is for the caller's
		// digest check, not for this last formality.
		return nil
	}
	return err
}

// headerBlock is block 0's payload: name NUL size [SP mtime-octal] NUL.
func headerBlock(name string, size int64, mtime time.Time) ([]byte, error) {
	if name == "" {
		return nil, errors.New("empty file name")
	}
	for _, c := range []byte(name) {
		if c == 0 {
			return nil, errors.New("file name contains a NUL byte")
		}
	}
	h := append([]byte(name), 0)
	h = strconv.AppendInt(h, size, 10)
	if !mtime.IsZero() {
		h = append(h, ' ')
		h = strconv.AppendInt(h, mtime.Unix(), 8)
	}
	h = append(h, 0)
	if len(h) > 1024 {
		return nil, fmt.Errorf("file name is %d bytes; it must fit in the 1024-byte header block", len(name))
	}
	return h, nil
}

// frame builds a block: SOH/STX, number, its complement, payload padded
// with fill to 128 or 1024 bytes, CRC-16 big-endian. Payloads of up to 128
// bytes go in a 128-byte block, as lrzsz does for a short last block.
func frame(num byte, payload []byte, fill byte) []byte {
	size, kind := 1024, byte(stx)
	if len(payload) <= 128 {
		size, kind = 128, soh
	}
	f := make([]byte, 3+size+2)
	f[0], f[1], f[2] = kind, num, ^num
	copy(f[3:], payload)
	for i := 3 + len(payload); i < 3+size; i++ {
		f[i] = fill
	}
	crc := crc16(f[3 : 3+size])
	f[3+size], f[4+size] = byte(crc>>8), byte(crc)
	return f
}

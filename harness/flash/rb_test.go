package flash

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// rbSession is lrzsz's rb receiving on a pty we hold the master of.
type rbSession struct {
	pty    *os.File
	cmd    *exec.Cmd
	dir    string
	stderr lockedBuffer // rb writes it while a failing test may read it
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startRB(tb testing.TB, args ...string) *rbSession {
	tb.Helper()
	path, err := exec.LookPath("rb")
	if w := os.Getenv("RBWRAP"); w != "" {
		path = w
	}
	if err != nil {
		tb.Skip("lrzsz rb not installed")
	}
	master, tty, err := pty.Open()
	if err != nil {
		tb.Fatalf("open pty: %v", err)
	}
	// Raw before rb starts: no byte of ours may be translated, even
	// before rb sets the mode itself.
	if err := makeRaw(tty); err != nil {
		tb.Fatalf("raw pty: %v", err)
	}
	s := &rbSession{pty: master, dir: tb.TempDir()}
	s.cmd = exec.Command(path, append([]string{"--ymodem", "-y", "-b"}, args...)...)
	s.cmd.Dir = s.dir
	s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = tty, tty, &s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start rb: %v", err)
	}
	// We keep tty open: when rb exits and the last slave fd closes, Linux
	// may drop rb's final ACK still in the pty's buffer.
	tb.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
		tty.Close()
		master.Close()
	})
	return s
}

// wait waits for rb to exit and fails unless it exited 0.
func (s *rbSession) wait(tb testing.TB) {
	tb.Helper()
	if err := s.cmd.Wait(); err != nil {
		tb.Fatalf("rb: %v; stderr:\n%s", err, s.stderr.String())
	}
}

func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

func testData(n int) []byte {
	p := make([]byte, n)
	x := uint32(n)*2654435761 + 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	// Bytes a tty would translate or act on, and our own control bytes.
	for i, b := range []byte{'\r', '\n', 0x03, 0x11, 0x13, 0x18, 0x1A, 0x7F, 0xFF} {
		if i < n {
			p[i] = b
		}
	}
	return p
}

func TestSendYModemToRB(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 127, 128, 129, 1024, 1025, 100000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			// Each rb on its own pty: most of a run is rb's own pauses (it drops a block sent
			// right after its 'C', costing a block timeout), so the sizes run side by side.
			t.Parallel()
			rb := startRB(t)
			data := testData(n)
			var calls, last int64
			opts := YModemOptions{
				ModTime:  time.Unix(1700000000, 0),
				Progress: func(sent, total int64) { calls++; last = sent },
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := SendYModem(ctx, rb.pty, "fw.bin", data, opts)
			if err != nil {
				t.Fatalf("SendYModem: %v; rb stderr:\n%s", err, rb.stderr.String())
			}
			rb.wait(t)
			got, err := os.ReadFile(filepath.Join(rb.dir, "fw.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("rb wrote %d bytes, want the %d sent (equal length: %v)", len(got), len(data), len(got) == len(data))
			}
			wantBlocks := int((n + 1023) / 1024)
			if st.Bytes != int64(n) || st.Blocks != wantBlocks || calls != int64(wantBlocks) || last != int64(n) {
				t.Errorf("stats %+v, progress calls %d last %d; want %d bytes in %d blocks", st, calls, last, n, wantBlocks)
			}
			// rb flushes its input right after asking for data, so a block sent at once may be
			// dropped and sent again after the block timeout: resends are legitimate here.
			t.Logf("stats %+v", st)
			if fi, err := os.Stat(filepath.Join(rb.dir, "fw.bin")); err == nil && !fi.ModTime().Equal(opts.ModTime) {
				t.Logf("rb set mtime %v, header said %v", fi.ModTime(), opts.ModTime)
			}
		})
	}
}

package console

import (
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bufPipe is one direction of a serial line: writes never block (the UART
// driver buffers), reads block until data or close.
type bufPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newBufPipe() *bufPipe {
	p := &bufPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (p *bufPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
	return nil
}

// fakeDev imitates a device shell closely enough to exercise the console
// protocol: echo (optional, with busybox's CR CR LF wrap at a column), CRLF
// output, a prompt followed by busybox's ESC[6n, noise, chunked writes. It
// runs Shell's marker line by unquoting the eval'd command for handle.
type fakeDev struct {
	prompt string // written after each command
	echo   bool
	wrap   int // echo wraps after this column (prompt included); 0: never
	chunk  int // device writes at most this many bytes at a time; 0: whole
	boot   string
	noise  func() []byte // written after each prompt when set
	// handle runs one command: output (LF line ends) and exit status.
	// Status -1 imitates a syntax error: the shell abandons the line.
	handle func(cmd string) (string, int)

	toHost, fromHost *bufPipe
	quit             chan struct{}
	mu               sync.Mutex
	lines            []string // lines received, in order
}

var markerLine = regexp.MustCompile(`^echo '@@'"B(\d+)"'@@'; eval '(.*)'; echo '@@'"E(\d+):\$\?"'@@'$`)

// start runs the device and returns the host's end of the line.
func (d *fakeDev) start(t testing.TB) io.ReadWriter {
	d.toHost, d.fromHost = newBufPipe(), newBufPipe()
	d.quit = make(chan struct{})
	if d.handle == nil {
		d.handle = func(cmd string) (string, int) { return "", 0 }
	}
	t.Cleanup(func() {
		close(d.quit)
		d.toHost.Close()
		d.fromHost.Close()
	})
	go d.run()
	return struct {
		io.Reader
		io.Writer
	}{d.toHost, d.fromHost}
}

func (d *fakeDev) write(s string) {
	for len(s) > 0 {
		n := len(s)
		if d.chunk > 0 && n > d.chunk {
			n = d.chunk
		}
		d.toHost.Write([]byte(s[:n]))
		s = s[n:]
	}
}

func (d *fakeDev) visiblePromptLen() int { return len(clean(d.prompt)) }

func (d *fakeDev) showPrompt() {
	d.write(d.prompt)
	if d.noise != nil {
		d.write(string(d.noise()))
	}
}

func (d *fakeDev) run() {
	d.write(d.boot)
	d.showPrompt()
	col := d.visiblePromptLen()
	var line []byte
	buf := make([]byte, 512)
	for {
		n, err := d.fromHost.Read(buf)
		if err != nil {
			return
		}
		var echo strings.Builder
		for _, b := range buf[:n] {
			if b != '\n' && b != '\r' {
				line = append(line, b)
				if d.echo {
					echo.WriteByte(b)
					if col++; d.wrap > 0 && col == d.wrap {
						echo.WriteString("\r\r\n")
						col = 0
					}
				}
				continue
			}
			if d.echo && col != 0 { // busybox adds nothing when the wrap just ended the line
				echo.WriteString("\r\n")
			}
			d.write(echo.String())
			echo.Reset()
			d.mu.Lock()
			d.lines = append(d.lines, string(line))
			d.mu.Unlock()
			d.exec(string(line))
			select {
			case <-d.quit:
				return
			default:
			}
			d.showPrompt()
			line, col = line[:0], d.visiblePromptLen()
		}
		d.write(echo.String())
	}
}

func (d *fakeDev) exec(line string) {
	if line == "" {
		return
	}
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	m := markerLine.FindStringSubmatch(line)
	if m == nil {
		out, _ := d.handle(line)
		d.write(crlf(out))
		return
	}
	cmd := strings.ReplaceAll(m[2], `'\''`, `'`)
	d.write("@@B" + m[1] + "@@\r\n")
	out, status := d.handle(cmd)
	d.write(crlf(out))
	if status >= 0 {
		d.write("@@E" + m[3] + ":" + strconv.Itoa(status) + "@@\r\n")
	}
}

func (d *fakeDev) received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.lines...)
}

// hang blocks the device until the test ends.
func (d *fakeDev) hang() { <-d.quit }

// sleep pauses the device unless the test is ending.
func (d *fakeDev) sleep(dur time.Duration) {
	select {
	case <-time.After(dur):
	case <-d.quit:
	}
}

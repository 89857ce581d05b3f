package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"go.bug.st/serial/enumerator"
)

// hangGuard bounds waits that would otherwise hang a broken test; it is not
// a speed assertion.
const hangGuard = 10 * time.Second

// newPty returns the master side and the slave's path. The test's own slave
// descriptor is closed once the port under test has opened the path, so
// that closing the master makes the node vanish as a USB adapter would.
func newPty(t *testing.T) (*os.File, string, func()) {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatalf("pty.Open: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s.Name(), func() { s.Close() }
}

func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(r, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
	case <-time.After(hangGuard):
		t.Fatalf("no %d bytes within %s", n, hangGuard)
	}
	return buf
}

func openPort(t *testing.T, cfg Config) *Port {
	t.Helper()
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestOpenPtyExchangesBytesBothWays(t *testing.T) {
	m, path, closeSlave := newPty(t)
	p := openPort(t, Config{Port: path, Baud: 9600, Parity: "even", StopBits: "2", DataBits: 7})
	closeSlave()
	if p.Path() != path {
		t.Errorf("Path() = %q, want %q", p.Path(), path)
	}

	// Binary-safe: raw mode must pass CR, LF, NUL and 0xff unchanged.
	out := []byte("hello\r\n\x00\xff\x03")
	if n, err := p.Write(out); err != nil || n != len(out) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := readN(t, m, len(out)); !bytes.Equal(got, out) {
		t.Errorf("master read %q, want %q", got, out)
	}

	in := []byte("world\n\x1b[6n")
	if _, err := m.Write(in); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, p, len(in)); !bytes.Equal(got, in) {
		t.Errorf("port read %q, want %q", got, in)
	}
}

func TestReadContextCancelUnblocks(t *testing.T) {
	_, path, closeSlave := newPty(t)
	p := openPort(t, Config{Port: path})
	closeSlave()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		n, err := p.ReadContext(ctx, make([]byte, 16))
		if n != 0 {
			err = errors.New("read data from an idle port")
		}
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ReadContext after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("ReadContext did not return after cancel")
	}
	// The port is still usable after a cancelled read.
	if _, err := p.Write([]byte("x")); err != nil {
		t.Errorf("Write after cancelled read: %v", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	_, path, closeSlave := newPty(t)
	p := openPort(t, Config{Port: path})
	closeSlave()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		_, err := p.Read(make([]byte, 16))
		done <- err
	}()
	<-started
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Read did not return after Close")
	}
	if _, err := p.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestVanishedPortWithoutReopenFails(t *testing.T) {
	m, path, closeSlave := newPty(t)
	p := openPort(t, Config{Port: path})
	closeSlave()
	m.Close()
	_, err := p.Read(make([]byte, 8))
	if !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Read on vanished port: %v, want ErrDisconnected", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the port %s", err, path)
	}
}

// TestReopenFollowsSymlink models /dev/serial/by-id/...: a stable name whose
// target changes when the adapter re-enumerates across a device reboot.
func TestReopenFollowsSymlink(t *testing.T) {
	link := filepath.Join(t.TempDir(), "usb-FTDI_FT232R_A1B2C3-if00-port0")
	repoint := func(target string) {
		tmp := link + ".new"
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil { // atomic, as udev does
			t.Fatal(err)
		}
	}
	m1, path1, closeSlave1 := newPty(t)
	repoint(path1)
	p := openPort(t, Config{Port: link, Reopen: hangGuard})
	closeSlave1()
	if p.Path() != link {
		t.Errorf("Path() = %q, want the stable name %q", p.Path(), link)
	}

	// The device reboots: the node vanishes while a Read is pending ...
	readDone := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(p, buf); err != nil {
			readErr <- err
			return
		}
		readDone <- buf
	}()
	m1.Close()

	// ... and comes back as another pty behind the same name.
	m2, path2, closeSlave2 := newPty(t)
	defer closeSlave2()
	repoint(path2)

	// A Write waits for the port to come back and lands on the new one.
	if _, err := p.Write([]byte("ping")); err != nil {
		t.Fatalf("Write across reopen: %v", err)
	}
	if got := readN(t, m2, 4); string(got) != "ping" {
		t.Errorf("new master read %q, want ping", got)
	}
	// The new port is in raw mode now (it echoed nothing back), so the
	// pending Read gets exactly what the new device sends.
	if _, err := m2.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-readDone:
		if string(got) != "pong" {
			t.Errorf("Read across reopen = %q, want pong", got)
		}
	case err := <-readErr:
		t.Fatalf("Read across reopen: %v", err)
	case <-time.After(hangGuard):
		t.Fatal("Read did not resume on the new port")
	}
}

func TestReopenByUSBIdentityFindsNewNode(t *testing.T) {
	_, path1, closeSlave1 := newPty(t)
	current := path1
	fakeEnumerate(t, func() []*enumerator.PortDetails {
		return []*enumerator.PortDetails{
			{Name: "/dev/ttyS0"},
			{Name: current, IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A1B2C3"},
		}
	})
	p := openPort(t, Config{USB: &USBID{VID: "0x0403", PID: "6001", Serial: "a1b2c3"}})
	closeSlave1()
	if p.Path() != path1 {
		t.Fatalf("Path() = %q, want %q", p.Path(), path1)
	}
	m2, path2, closeSlave2 := newPty(t)
	defer closeSlave2()
	current = path2
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := p.Reopen(ctx); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if p.Path() != path2 {
		t.Errorf("Path() after Reopen = %q, want %q", p.Path(), path2)
	}
	if _, err := p.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, m2, 2); string(got) != "ok" {
		t.Errorf("read %q after Reopen", got)
	}
}

func TestOpenMissingPort(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyUSB9")
	_, err := Open(context.Background(), Config{Port: missing})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name the path", err)
	}

	// With Reopen, Open waits for the port, but no longer than ctx allows.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Open(ctx, Config{Port: missing, Reopen: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Open with cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestOpenWaitsForPortToAppear(t *testing.T) {
	link := filepath.Join(t.TempDir(), "by-id")
	m, path, closeSlave := newPty(t)
	defer closeSlave()
	go func() {
		time.Sleep(3 * retryEvery) // appear after Open has looked at least once
		_ = os.Symlink(path, link)
	}()
	p := openPort(t, Config{Port: link, Reopen: hangGuard})
	if _, err := p.Write([]byte("up")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, m, 2); string(got) != "up" {
		t.Errorf("read %q", got)
	}
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Port: "/dev/ttyUSB0"}
	cases := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no port", Config{}, "Port"},
		{"both", Config{Port: "/dev/x", USB: &USBID{VID: "0403", PID: "6001"}}, "USB"},
		{"parity", Config{Port: "/dev/x", Parity: "sometimes"}, "Parity"},
		{"stop bits", Config{Port: "/dev/x", StopBits: "3"}, "StopBits"},
		{"stop bits 1.5", Config{Port: "/dev/x", StopBits: "1.5"}, "StopBits"},
		{"baud", Config{Port: "/dev/x", Baud: -9600}, "Baud"},
		{"baud too high", Config{Port: "/dev/x", Baud: 10000000}, "Baud"},
		{"data bits", Config{Port: "/dev/x", DataBits: 9}, "DataBits"},
		{"vid", Config{USB: &USBID{VID: "FTDI", PID: "6001"}}, "USB.VID"},
		{"pid", Config{USB: &USBID{VID: "0403", PID: "60011"}}, "USB.PID"},
		{"reopen", Config{Port: "/dev/x", Reopen: -time.Second}, "Reopen"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate = %v, want *ConfigError", err)
			}
			if ce.Field != c.field {
				t.Errorf("Field = %q, want %q (%v)", ce.Field, c.field, err)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("message %q does not name %s", err, c.field)
			}
			// Open refuses it before touching any device.
			if _, err := Open(context.Background(), c.cfg); !errors.As(err, &ce) {
				t.Errorf("Open = %v, want *ConfigError", err)
			}
		})
	}
}

func fakeEnumerate(t *testing.T, list func() []*enumerator.PortDetails) {
	t.Helper()
	saved := Enumerate
	Enumerate = func(...func(vid, pid string) bool) ([]*enumerator.PortDetails, error) {
		return list(), nil
	}
	t.Cleanup(func() { Enumerate = saved })
}

func TestFind(t *testing.T) {
	ports := []*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A1"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "B2"},
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "2fe3", PID: "0100"},
	}
	fakeEnumerate(t, func() []*enumerator.PortDetails { return ports })

	t.Run("match", func(t *testing.T) {
		got, err := Find(USBID{VID: "2FE3", PID: "0x0100"})
		if err != nil || got != "/dev/ttyACM0" {
			t.Errorf("Find = %q, %v; want /dev/ttyACM0", got, err)
		}
		got, err = Find(USBID{VID: "0403", PID: "6001", Serial: "B2"})
		if err != nil || got != "/dev/ttyUSB1" {
			t.Errorf("Find by serial = %q, %v; want /dev/ttyUSB1", got, err)
		}
	})
	t.Run("ambiguous", func(t *testing.T) {
		_, err := Find(USBID{VID: "0403", PID: "6001"})
		if !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("Find = %v, want ErrAmbiguous", err)
		}
		for _, want := range []string{"/dev/ttyUSB0", "/dev/ttyUSB1"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not list %s", err, want)
			}
		}
	})
	t.Run("no match lists candidates", func(t *testing.T) {
		_, err := Find(USBID{VID: "0403", PID: "6001", Serial: "C3"})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Find = %v, want ErrNotFound", err)
		}
		var fe *FindError
		if !errors.As(err, &fe) || len(fe.Seen) != len(ports) {
			t.Fatalf("want *FindError with %d ports seen, got %#v", len(ports), err)
		}
		for _, want := range []string{"/dev/ttyS0 (not USB)", "/dev/ttyUSB0 (USB 0403:6001 serial=A1)", "/dev/ttyACM0 (USB 2fe3:0100)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not list %q", err, want)
			}
		}
	})
	t.Run("enumeration fails", func(t *testing.T) {
		boom := errors.New("sysfs unreadable")
		saved := Enumerate
		defer func() { Enumerate = saved }()
		Enumerate = func(...func(vid, pid string) bool) ([]*enumerator.PortDetails, error) { return nil, boom }
		if _, err := Find(USBID{VID: "0403", PID: "6001"}); !errors.Is(err, boom) {
			t.Errorf("Find = %v, want the enumeration error", err)
		}
	})
	t.Run("bad id", func(t *testing.T) {
		var ce *ConfigError
		if _, err := Find(USBID{VID: "", PID: "6001"}); !errors.As(err, &ce) || ce.Field != "USB.VID" {
			t.Errorf("Find(empty VID) = %v, want ConfigError on USB.VID", err)
		}
	})
}

// BenchmarkPtyRoundTrip measures a 64-byte write through the port and back
// from a master-side echo.
func BenchmarkPtyRoundTrip(b *testing.B) {
	m, s, err := pty.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	p, err := Open(context.Background(), Config{Port: s.Name()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	s.Close()
	go io.Copy(m, m) // echo everything back
	msg := bytes.Repeat([]byte("x"), 64)
	buf := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(p, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// A Read pending while Reopen closes the port under it carries on with the reopened port: the
// driver's close wakes it, and it must not take that for a vanished device.
func TestReadPendingAcrossReopen(t *testing.T) {
	m, path, _ := newPty(t)
	p := openPort(t, Config{Port: path})
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 3)
		_, err := io.ReadFull(p, buf)
		if err == nil && string(buf) != "abc" {
			err = errors.New("read " + string(buf) + ", want abc")
		}
		got <- err
	}()
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		err := p.Reopen(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Reopen: %v", err)
		}
	}
	if _, err := m.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("Read across Reopen: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Read did not return the bytes written after Reopen")
	}
}

// BenchmarkCloseWithPendingRead is closing a port while a Read waits on it, as a console's
// reader always does: the driver's close wakes the Read, no read tick is waited out.
func BenchmarkCloseWithPendingRead(b *testing.B) {
	m, s, err := pty.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	defer s.Close()
	for b.Loop() {
		p, err := Open(context.Background(), Config{Port: s.Name()})
		if err != nil {
			b.Fatal(err)
		}
		started := make(chan struct{})
		done := make(chan struct{})
		go func() {
			close(started)
			_, _ = p.Read(make([]byte, 16))
			close(done)
		}()
		<-started
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		<-done
	}
}

package sim_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey/sim"
)

// The integration tests use the real pcscd with vsmartcard's vpcd driver and
// one vpcd slot per test binary (default 35963, reader "Virtual PCD 00 00").
// Tests do not run in parallel: one card at a time sits in the reader.
var (
	vpcdAddr   = flag.String("vpcd", sim.DefaultAddr, "vpcd address the emulator plugs into")
	readerName = flag.String("reader", "Virtual PCD 00 00", "PC/SC reader name of that vpcd slot")
)

var (
	pcscdOnce sync.Once
	pcscdErr  error
)

// requirePCSCD skips the test unless pcscd with the vpcd driver is reachable,
// starting pcscd (as CI does: `pcscd` as root) if it is not running.
func requirePCSCD(t testing.TB) {
	t.Helper()
	pcscdOnce.Do(func() { pcscdErr = ensurePCSCD(*vpcdAddr) })
	if pcscdErr != nil {
		t.Skipf("skipping: pcscd with the vsmartcard vpcd driver is not available: %v "+
			"(install pcscd and vsmartcard-vpcd, then run `pcscd` as root)", pcscdErr)
	}
}

func ensurePCSCD(addr string) error {
	if vpcdListening(addr) {
		return nil
	}
	path, err := exec.LookPath("pcscd")
	if err != nil {
		return fmt.Errorf("nothing listens on %s and pcscd is not installed: %w", addr, err)
	}
	// pcscd daemonizes; the started daemon outlives the test binary, like
	// the system service it stands in for. If one runs already without the
	// vpcd driver, this fails and says so.
	if out, err := exec.Command(path).CombinedOutput(); err != nil {
		return fmt.Errorf("nothing listens on %s; starting pcscd (is one already running without the vpcd driver, or are we not root?): %w %s",
			addr, err, strings.TrimSpace(string(out)))
	}
	for range 50 {
		if vpcdListening(addr) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pcscd started but nothing listens on %s: is vsmartcard-vpcd installed (/etc/reader.conf.d/vpcd)?", addr)
}

// vpcdListening reports whether a TCP socket listens on addr's port, from
// /proc/net/tcp{,6} (a probe connection would look like a card to vpcd).
func vpcdListening(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	suffix := fmt.Sprintf(":%04X", n)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			const listen = "0A"
			if len(fields) > 3 && strings.HasSuffix(fields[1], suffix) && fields[3] == listen {
				return true
			}
		}
	}
	return false
}

// testCard is a card in a state file, plugged into vpcd.
type testCard struct {
	card *sim.Card
	plug *sim.Plugged
	path string
}

// plugNew creates a card in a fresh state file and plugs it in.
func plugNew(t testing.TB, opts sim.Options) *testCard {
	t.Helper()
	requirePCSCD(t)
	path := filepath.Join(t.TempDir(), "yubikey.json")
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := sim.Open(path, opts)
	if err != nil {
		t.Fatalf("sim.Open: %v", err)
	}
	return plugCard(t, c, path)
}

func plugCard(t testing.TB, c *sim.Card, path string) *testCard {
	t.Helper()
	p, err := sim.Plug(context.Background(), *vpcdAddr, c)
	if err != nil {
		t.Fatalf("sim.Plug: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing transport: %v", err)
		}
	})
	waitReady(t, p)
	return &testCard{card: c, plug: p, path: path}
}

// waitReady waits until pcscd has powered the card. It is a readiness wait
// for a daemon that polls, not a timing assertion.
func waitReady(t testing.TB, p *sim.Plugged) {
	t.Helper()
	select {
	case <-p.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("pcscd did not power the virtual card within 30s (transport error: %v); "+
			"is another card plugged into %s?", p.Err(), p.Addr())
	}
}

// openYK opens the card with piv-go, retrying while pcscd finishes noticing
// the insertion. The YubiKey is closed at the end of the test.
func openYK(t testing.TB) *piv.YubiKey {
	t.Helper()
	yk, err := openYKErr()
	if err != nil {
		t.Fatalf("piv.Open(%q): %v", *readerName, err)
	}
	t.Cleanup(func() { _ = yk.Close() })
	return yk
}

func openYKErr() (*piv.YubiKey, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		yk, err := piv.Open(*readerName)
		if err == nil {
			return yk, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reopen closes yk and opens the card again.
func reopen(t testing.TB, yk *piv.YubiKey) *piv.YubiKey {
	t.Helper()
	if err := yk.Close(); err != nil {
		t.Fatalf("closing YubiKey: %v", err)
	}
	return openYK(t)
}

func authErr(err error) (piv.AuthErr, bool) {
	var e piv.AuthErr
	ok := errors.As(err, &e)
	return e, ok
}

// probeEnv makes the test binary a one-shot probe: open the reader named in
// it with piv-go and exit 0 if a card answered. Probing in a child process
// keeps piv.Open's failure paths (which can leave an exclusive PC/SC handle
// behind when a card vanishes mid-open) out of the test process.
const probeEnv = "SIM_TEST_PROBE_READER"

func TestMain(m *testing.M) {
	if reader := os.Getenv(probeEnv); reader != "" {
		yk, err := piv.Open(reader)
		switch {
		case err == nil:
			_ = yk.Close()
			os.Exit(0)
		case strings.Contains(err.Error(), "connecting to smart card:"):
			os.Exit(3) // pcscd has no card in the reader
		}
		os.Exit(4) // a card vanishing mid-open: ask again
	}
	flag.Parse()
	if fuzzWorker() {
		// A fuzz worker only runs the fuzz function, which needs no vpcd; its coordinator (a
		// process of this binary) holds the slot lock and would keep it from the worker forever.
		os.Exit(m.Run())
	}
	// One card per vpcd slot across every test binary running at once (the specs use slots too).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	release, err := sim.LockSlot(ctx, *vpcdAddr)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	release()
	os.Exit(code)
}

// fuzzWorker reports whether this process is a worker of a fuzz coordinator (-test.fuzzworker).
func fuzzWorker() bool {
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}

// cardPresent reports whether pcscd offers a card in the reader, from a
// child process; a card caught vanishing counts as present.
func cardPresent(t testing.TB) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), probeEnv+"="+*readerName)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		return false
	case errors.As(err, &exit) && exit.ExitCode() == 4:
		return true
	}
	t.Fatalf("running the probe: %v", err)
	return false
}

// waitGone waits until pcscd no longer offers the card (after Unplug, which
// already waits for vpcd to see the removal). A readiness wait on a polling
// daemon, not a timing assertion.
func waitGone(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for cardPresent(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the card is still in the reader 30s after it was unplugged")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

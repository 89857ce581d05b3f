package link

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hilbench/harness/internal/lockfile"
)

// TestMain points the port locks at a directory of the test's own (shared with the child
// processes it re-executes), so no test needs /var/lock.
func TestMain(m *testing.M) {
	if d := os.Getenv("HIL_LINK_TEST_LOCKDIR"); d != "" {
		LockDir = d
		os.Exit(m.Run())
	}
	d, err := os.MkdirTemp("", "hil-link-locks-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	LockDir = d
	os.Setenv("HIL_LINK_TEST_LOCKDIR", d)
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

func uucpPath(t *testing.T, path string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(LockDir, "LCK.."+filepath.Base(real))
}

func wantInUse(t *testing.T, err error, pid int, cmd string) {
	t.Helper()
	if err == nil {
		t.Fatal("second Open succeeded; want it refused")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("error %v does not wrap ErrInUse", err)
	}
	want := fmt.Sprintf("is in use by pid %d", pid)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), cmd) {
		t.Errorf("error %q does not say %q (%s)", err, want, cmd)
	}
}

func TestSecondOpenInOneProcessFailsNamingThePid(t *testing.T) {
	_, path, _ := newPty(t)
	openPort(t, Config{Port: path})
	start := time.Now()
	// Even with Reopen the refusal is immediate: waiting would not make the holder go away.
	_, err := Open(context.Background(), Config{Port: path, Reopen: 5 * time.Second})
	wantInUse(t, err, os.Getpid(), filepath.Base(os.Args[0]))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %s, want at once", d)
	}
	if pid, err := os.ReadFile(uucpPath(t, path)); err != nil || string(pid) != fmt.Sprintf("%10d\n", os.Getpid()) {
		t.Errorf("LCK file = %q, %v; want our pid as %%10d\\n", pid, err)
	}
}

func TestCloseReleasesTheLock(t *testing.T) {
	_, path, _ := newPty(t)
	p, err := Open(context.Background(), Config{Port: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(uucpPath(t, path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LCK file after Close: %v, want removed", err)
	}
	openPort(t, Config{Port: path})
}

func TestSymlinkAndRealPathAreOneLock(t *testing.T) {
	_, path, _ := newPty(t)
	link := filepath.Join(t.TempDir(), "console")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	openPort(t, Config{Port: link})
	_, err := Open(context.Background(), Config{Port: path})
	wantInUse(t, err, os.Getpid(), "")
}

func TestStaleLCKOfDeadPidIsTakenOver(t *testing.T) {
	_, path, _ := newPty(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	lck := uucpPath(t, path)
	if err := os.WriteFile(lck, []byte(fmt.Sprintf("%10d\n", dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	openPort(t, Config{Port: path})
	if b, _ := os.ReadFile(lck); string(b) != fmt.Sprintf("%10d\n", os.Getpid()) {
		t.Errorf("LCK file = %q, want our pid", b)
	}
}

func TestLCKOfLiveForeignPidBlocks(t *testing.T) {
	_, path, _ := newPty(t)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	// Start returns once exec has begun, a moment before /proc/PID/cmdline holds the new command.
	for deadline := time.Now().Add(10 * time.Second); lockfile.Command(other.Process.Pid) != "sleep 30" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	lck := uucpPath(t, path)
	// As minicom writes it.
	if err := os.WriteFile(lck, []byte(fmt.Sprintf("%10d\n", other.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Config{Port: path})
	wantInUse(t, err, other.Process.Pid, "sleep 30")
	if b, _ := os.ReadFile(lck); string(b) != fmt.Sprintf("%10d\n", other.Process.Pid) {
		t.Errorf("LCK file of the live holder changed to %q", b)
	}
	// The refused open left no flock behind: once the holder is gone the port opens.
	other.Process.Kill()
	other.Wait()
	openPort(t, Config{Port: path})
}

// TestHelperHoldPort is the child process of the cross-process tests: it opens the port,
// says so, and holds it until killed.
func TestHelperHoldPort(t *testing.T) {
	path := os.Getenv("HIL_LINK_HOLD_PORT")
	if path == "" {
		t.Skip("child process of the cross-process lock tests")
	}
	p, err := Open(context.Background(), Config{Port: path})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	defer p.Close()
	fmt.Println("OPEN")
	time.Sleep(time.Minute)
}

func TestOpenFromAnotherProcessFailsAndCrashReleases(t *testing.T) {
	_, path, _ := newPty(t)
	// The child holds the port.
	child := exec.Command(os.Args[0], "-test.run=^TestHelperHoldPort$")
	child.Env = append(os.Environ(), "HIL_LINK_HOLD_PORT="+path)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "OPEN\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	_, err = Open(context.Background(), Config{Port: path})
	wantInUse(t, err, child.Process.Pid, "-test.run=^TestHelperHoldPort$")

	// kill -9: the flock dies with it; its LCK file is stale and taken over.
	child.Process.Kill()
	child.Wait()
	if b, _ := os.ReadFile(uucpPath(t, path)); strings.TrimSpace(string(b)) != strconv.Itoa(child.Process.Pid) {
		t.Fatalf("LCK file after the crash = %q, want the dead child's pid", b)
	}
	p := openPort(t, Config{Port: path})

	// And the other way round: a child cannot open what this process holds.
	child2 := exec.Command(os.Args[0], "-test.run=^TestHelperHoldPort$")
	child2.Env = append(os.Environ(), "HIL_LINK_HOLD_PORT="+path)
	b, err := child2.Output()
	if code := child2.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("child2 exit %d (%v): %s", code, err, b)
	}
	if want := fmt.Sprintf("is in use by pid %d", os.Getpid()); !strings.Contains(string(b), want) {
		t.Errorf("child2 said %q, want %q", b, want)
	}
	p.Close()
}

func TestCloseIsPromptWithReadOrWriteBlocked(t *testing.T) {
	_, path, _ := newPty(t)
	p, err := Open(context.Background(), Config{Port: path})
	if err != nil {
		t.Fatal(err)
	}
	reads := make(chan error, 1)
	go func() { _, err := p.Read(make([]byte, 16)); reads <- err }()
	// The master never reads: the pty's buffer fills and this Write blocks in the driver.
	writes := make(chan error, 1)
	go func() { _, err := p.Write(make([]byte, 1<<20)); writes <- err }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Close hung")
	}
	if d := time.Since(start); d > closeGrace+time.Second {
		t.Errorf("Close took %s with a Read and a Write blocked, want under %s", d, closeGrace+time.Second)
	}
	select {
	case err := <-reads:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read: %v, want net.ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Read did not return after Close")
	}
	// The lock went with Close even though the Write is still stuck in the driver.
	openPort(t, Config{Port: path})
}

// Openers racing for one port: exactly one wins each round, the others are told who holds it.
func TestRacingOpensOneWins(t *testing.T) {
	_, path, _ := newPty(t)
	for round := 0; round < 20; round++ {
		const n = 4
		results := make(chan *Port, n)
		errs := make(chan error, n)
		for range n {
			go func() {
				p, err := Open(context.Background(), Config{Port: path})
				if err != nil {
					errs <- err
					results <- nil
					return
				}
				results <- p
			}()
		}
		var won []*Port
		for range n {
			if p := <-results; p != nil {
				won = append(won, p)
			}
		}
		close(errs)
		for err := range errs {
			if !errors.Is(err, ErrInUse) {
				t.Errorf("round %d: a loser got %v, want ErrInUse", round, err)
			}
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d opens won, want 1", round, len(won))
		}
		won[0].Close()
	}
}

// TestWaitingForAVanishedDeviceHoldsNoLock: a port waiting for its device to come back holds no
// lock on the node it had. Once that node is gone its number goes to the next device to appear
// (another adapter, another simulator's pseudo-terminal), whose user must be able to open it.
func TestWaitingForAVanishedDeviceHoldsNoLock(t *testing.T) {
	link := filepath.Join(t.TempDir(), "console")
	m, path, closeSlave := newPty(t)
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	p := openPort(t, Config{Port: link, Reopen: hangGuard})
	closeSlave()
	lockFile := filepath.Join(LockDir, "hil-port"+strings.ReplaceAll(path, "/", "_")+".lock")
	if l, err := lockfile.Acquire(lockFile); err == nil {
		l.Release()
		t.Fatal("the lock of an open port could be taken")
	}

	// The device leaves the bus: its name first, then its node. A pending Read starts waiting.
	readErr := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 1))
		readErr <- err
	}()
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	m.Close()

	deadline := time.Now().Add(hangGuard)
	for {
		l, err := lockfile.Acquire(lockFile)
		if err == nil {
			l.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the port still holds the lock of %s, which is gone: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(LockDir, "LCK.."+filepath.Base(path))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LCK file of the gone node: %v, want removed", err)
	}
	select {
	case err := <-readErr:
		t.Fatalf("Read ended while the port waits for its device: %v", err)
	default:
	}
	p.Close()
	if err := <-readErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
}

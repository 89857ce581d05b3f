package station

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/signer/softdak"
)

func testBench(t *testing.T) *bench.Bench {
	t.Helper()
	dir := t.TempDir()
	r, err := softdak.InitDevelopment(filepath.Join(dir, "dak"), softdak.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &bench.Bench{
		Signer: bench.SignerConfig{Type: bench.SignerSoftDAK, Key: r.Key, Certificate: r.Certificate,
			Roots: []string{r.RootCertificate}},
		Profile: bench.ProfileConfig{DeviceConf: filepath.Join("..", "..", "fixtures", "profiles", "device.conf")},
		Output:  filepath.Join(dir, "out"),
	}
}

// A second pipeline on one state directory is refused naming the first owner; closing the
// first lets the next one in.
func TestSecondOwnerOfTheSignerStateIsRefused(t *testing.T) {
	b := testBench(t)
	ctx := context.Background()
	st, err := Open(ctx, b, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, b, time.Now())
	want := fmt.Sprintf("signer state %s is owned by pid %d (%s", StateDir(b), os.Getpid(), filepath.Base(os.Args[0]))
	if !errors.Is(err, ErrStateOwned) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open: %v\nwant ErrStateOwned and %q", err, want)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(ctx, b, time.Now())
	if err != nil {
		t.Fatalf("Open after the owner closed: %v", err)
	}
	st2.Close()
}

// TestHelperOwnState is the child process of TestSignerStateOwnedByAnotherProcess.
func TestHelperOwnState(t *testing.T) {
	dir := os.Getenv("HIL_STATION_OWN_STATE")
	if dir == "" {
		t.Skip("child process of TestSignerStateOwnedByAnotherProcess")
	}
	l, err := LockState(dir)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	defer l.Close()
	fmt.Println("OWNED")
	time.Sleep(time.Minute)
}

func TestSignerStateOwnedByAnotherProcess(t *testing.T) {
	b := testBench(t)
	dir := StateDir(b)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestHelperOwnState$")
	child.Env = append(os.Environ(), "HIL_STATION_OWN_STATE="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "OWNED\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	_, err = Open(context.Background(), b, time.Now())
	want := fmt.Sprintf("signer state %s is owned by pid %d (", dir, child.Process.Pid)
	if !errors.Is(err, ErrStateOwned) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "TestHelperOwnState") {
		t.Fatalf("Open while another process owns the state: %v\nwant %q...", err, want)
	}
	// kill -9: the flock goes with the process.
	child.Process.Kill()
	child.Wait()
	st, err := Open(context.Background(), b, time.Now())
	if err != nil {
		t.Fatalf("Open after the owner died: %v", err)
	}
	st.Close()
	if b, err := os.ReadFile(filepath.Join(dir, StateLockFile)); err != nil || len(b) != 0 {
		t.Errorf("owner.lock after Close = %q, %v; want emptied", b, err)
	}
}

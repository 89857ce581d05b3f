package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hilbench/harness/ledger/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Child processes: the test binary run again with these variables reserves against a ledger
// that the parent test also uses, so two processes race for one budget.
const (
	childDriver = "HILBENCH_LEDGER_CHILD_DRIVER" // sqlite or postgres
	childLoc    = "HILBENCH_LEDGER_CHILD_LOC"    // file or DSN
	childName   = "HILBENCH_LEDGER_CHILD_NAME"   // prefix of the device keys it reserves
	childRounds = "HILBENCH_LEDGER_CHILD_ROUNDS" // DAKs, dak-shared-0...
	childN      = "HILBENCH_LEDGER_CHILD_N"      // reservations to try per DAK
	childMax    = "HILBENCH_LEDGER_CHILD_MAX"    // the DAK's budget
	childGo     = "HILBENCH_LEDGER_CHILD_GO"     // a file whose appearance starts the race
)

// TestHelperReserve is the child's body; it does nothing in a normal run.
func TestHelperReserve(t *testing.T) {
	driver := os.Getenv(childDriver)
	if driver == "" {
		t.Skip("helper process for the cross-process tests")
	}
	rounds, _ := strconv.Atoi(os.Getenv(childRounds))
	n, _ := strconv.Atoi(os.Getenv(childN))
	max, _ := strconv.ParseInt(os.Getenv(childMax), 10, 64)
	s, err := openLoc(driver, os.Getenv(childLoc))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Wait for the go signal, so both children are open before either reserves.
	for {
		if _, err := os.Stat(os.Getenv(childGo)); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Each round's reservations start together from goroutines of their own, so the two
	// processes' rounds overlap at the budget's edge.
	var mu sync.Mutex
	ok, exhausted := 0, 0
	for r := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, _, err := s.Reserve(context.Background(), Reservation{DeviceKey: fmt.Sprintf("%s-%d-%d", os.Getenv(childName), r, i),
					DAKSHA256: fmt.Sprint("dak-shared-", r), MaxSignatures: max, Station: os.Getenv(childName)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrBudgetExhausted):
					exhausted++
				default:
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	fmt.Printf("RESULT ok=%d exhausted=%d\n", ok, exhausted)
}

func openLoc(driver, loc string) (Store, error) {
	if driver == "postgres" {
		return OpenPostgres(context.Background(), loc)
	}
	return OpenSQLite(loc)
}

// raceProcesses runs children that each reserve n device keys against each of rounds DAKs
// (dak-shared-R) of a budget of max, and returns how many reservations succeeded in all.
func raceProcesses(t *testing.T, driver, loc string, children, rounds, n int, max int64) int {
	t.Helper()
	goFile := t.TempDir() + "/go"
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReserve$", "-test.v")
		cmd.Env = append(os.Environ(), childDriver+"="+driver, childLoc+"="+loc, childName+"=proc"+strconv.Itoa(i),
			childRounds+"="+strconv.Itoa(rounds), childN+"="+strconv.Itoa(n), childMax+"="+strconv.FormatInt(max, 10), childGo+"="+goFile)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, out)
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	total, exhausted := 0, 0
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
		var ok, ex int
		found := false
		for _, line := range strings.Split(outs[i].String(), "\n") {
			if _, err := fmt.Sscanf(line, "RESULT ok=%d exhausted=%d", &ok, &ex); err == nil {
				found = true
			}
		}
		if !found {
			t.Fatalf("child %d printed no result:\n%s", i, outs[i])
		}
		if ok+ex != rounds*n {
			t.Errorf("child %d: %d ok + %d exhausted, want %d reservations", i, ok, ex, rounds*n)
		}
		total += ok
		exhausted += ex
	}
	if exhausted == 0 {
		t.Errorf("no child met the exhausted budget: the race did not test the limit")
	}
	return total
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests play the hostile or careless client: connections left idle,
// a request line that never ends, answers never read. The agent must go on
// serving the others with its memory bounded.

// closedWithin reads from nc until the agent closes it (EOF or reset),
// failing after limit; answers (refusals) before the end are returned.
func closedWithin(t *testing.T, nc net.Conn, limit time.Duration) []byte {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(limit))
	got, err := io.ReadAll(nc)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the agent did not close the connection within %v", limit)
	}
	return got
}

// TestIdleConnectionsDoNotLockOut: 300 idle connections do not lock out a
// new client (the client table holds 256): the longest idle are closed to
// make room.
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	var mu sync.Mutex
	var log []string
	srv := newServer(t, d, nil)
	srv.IdleTimeout = time.Hour // the table's limit is tested, not the timeout
	srv.Logf = func(f string, a ...any) { mu.Lock(); log = append(log, fmt.Sprintf(f, a...)); mu.Unlock() }
	start(t, srv, path)
	var idle []net.Conn
	for range 300 {
		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		idle = append(idle, nc)
	}
	c := dial(t, path)
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatalf("a new client after 300 idle connections: %v", err)
	}
	if st.Clients != DefaultMaxClients {
		t.Errorf("%d clients connected, want the maximum, %d", st.Clients, DefaultMaxClients)
	}
	if _, err := c.Issue(context.Background(), "dut1", makeCSR(t, nil)); err != nil {
		t.Fatal(err)
	}
	// The first connections, idle the longest, were closed without a word.
	if got := closedWithin(t, idle[0], 10*time.Second); len(got) != 0 {
		t.Errorf("an evicted connection got %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(log, "\n"), "closed to make room for a new client") {
		t.Errorf("no eviction logged:\n%s", strings.Join(log, "\n"))
	}
}

// TestIdleTimeout: a connection that sends nothing is closed after
// IdleTimeout; the Client dials again when next needed.
func TestIdleTimeout(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	srv := newServer(t, d, nil)
	srv.IdleTimeout = 100 * time.Millisecond
	start(t, srv, path)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	began := time.Now()
	closedWithin(t, nc, 10*time.Second)
	if took := time.Since(began); took < srv.IdleTimeout {
		t.Errorf("closed after %v, before the idle timeout", took)
	}
	c := dial(t, path)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * srv.IdleTimeout) // the agent closes the Client's connection
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("the Client after its idle connection was closed: %v", err)
	}
	// Closing a Client whose connection the agent closed is no error (a station's Close at the
	// end of a run that sat idle).
	time.Sleep(3 * srv.IdleTimeout)
	if err := c.Close(); err != nil {
		t.Fatalf("Close after the agent closed the idle connection: %v", err)
	}
}

// TestWaitingClientNotIdle: a client waiting longer than IdleTimeout for a
// signature (a slow key, a long queue) is not closed as idle.
func TestWaitingClientNotIdle(t *testing.T) {
	d, _ := dak(t)
	fs := &fakeSigner{Signer: d, delay: 500 * time.Millisecond}
	path := filepath.Join(shortDir(t), "agent.sock")
	srv := newServer(t, fs, nil)
	srv.IdleTimeout = 100 * time.Millisecond
	start(t, srv, path)
	c := dial(t, path)
	if _, err := c.Issue(context.Background(), "dut1", makeCSR(t, nil)); err != nil {
		t.Fatal(err)
	}
}

// TestSlowlorisCutOff: a request line trickled a byte at a time is cut off
// ReadTimeout after it began, although bytes keep arriving.
func TestSlowlorisCutOff(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	var log safeLog
	srv := newServer(t, d, nil)
	srv.IdleTimeout, srv.ReadTimeout = time.Hour, 300*time.Millisecond
	srv.Logf = log.add
	start(t, srv, path)
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	began := time.Now()
	line := []byte(`{"op":"status","id":"` + strings.Repeat("x", 1000))
	var cut error
	for i := 0; i < len(line) && time.Since(began) < 30*time.Second; i++ {
		if _, cut = nc.Write(line[i : i+1]); cut != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cut == nil {
		t.Fatalf("a trickled request line was never cut off")
	}
	if took := time.Since(began); took < srv.ReadTimeout {
		t.Errorf("cut off after %v, before the read timeout", took)
	}
	if !log.has("is still unfinished (read timeout") {
		t.Errorf("not logged:\n%s", log.String())
	}
	// Others are served meanwhile and after.
	if _, err := dial(t, path).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type safeLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *safeLog) add(f string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
	l.mu.Unlock()
}

func (l *safeLog) has(s string) bool { return strings.Contains(l.String(), s) }

func (l *safeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// pipeliner connects and writes status requests without reading an answer,
// until the agent drops it; it returns how many it wrote.
func pipeliner(path string, stop <-chan struct{}) (int, error) {
	nc, err := net.Dial("unix", path)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var batch bytes.Buffer
	for i := range 64 {
		batch.WriteString(`{"op":"status","id":"` + strconv.Itoa(i) + `"}` + "\n")
	}
	n := 0
	for {
		select {
		case <-stop:
			return n, nil
		default:
		}
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := nc.Write(batch.Bytes()); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // the agent is busy elsewhere; it reads on
			}
			return n, err // dropped
		}
		n += 64
	}
}

// heapWatch samples the heap in use (goruntime.ReadMemStats) and the
// process's RSS until stopped, and returns the largest of each.
type heapWatch struct {
	stop      chan struct{}
	done      chan struct{}
	heap, rss uint64
}

func watchHeap() *heapWatch {
	w := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			w.heap = max(w.heap, ms.HeapInuse)
			w.rss = max(w.rss, rss())
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *heapWatch) end() (heap, rss uint64) {
	close(w.stop)
	<-w.done
	return w.heap, w.rss
}

// rss is the process's resident set (VmRSS), 0 where /proc is missing.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

const mib = 1 << 20

// TestNonReadingClientDropped: clients pipelining status requests without
// reading the answers are dropped (logged) while 8 honest clients keep
// issuing, and the heap stays bounded (it grew to 1.29 GB in 8 s before).
func TestNonReadingClientDropped(t *testing.T) {
	d, _ := dak(t)
	path := filepath.Join(shortDir(t), "agent.sock")
	var log safeLog
	srv := newServer(t, d, nil)
	srv.Logf = log.add
	srv.WriteTimeout = 500 * time.Millisecond
	start(t, srv, path)
	w := watchHeap()

	stop := make(chan struct{})
	var dropped atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				if _, err := pipeliner(path, stop); err != nil {
					dropped.Add(1)
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	issued := honest(t, path, 8, 10)
	// Go on until every pipeliner has been dropped at least once.
	for limit := time.Now().Add(time.Minute); dropped.Load() < 4 && time.Now().Before(limit); {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	heap, _ := w.end()
	if dropped.Load() < 4 {
		t.Errorf("the non-reading clients were dropped %d times, want at least 4", dropped.Load())
	}
	if issued != 80 {
		t.Errorf("honest clients got %d certificates, want 80", issued)
	}
	if !log.has("answers unread") {
		t.Errorf("no drop logged")
	}
	t.Logf("heap in use at most %.1f MiB; non-reading clients dropped %d times", float64(heap)/mib, dropped.Load())
	if heap > 256*mib {
		t.Errorf("heap in use reached %.0f MiB", float64(heap)/mib)
	}
}

// honest runs n clients issuing each certificates; it returns how many were
// issued.
func honest(tb testing.TB, path string, n, each int) int64 {
	tb.Helper()
	csrs := make([][][]byte, n)
	for i := range csrs {
		csrs[i] = makeCSRs(tb, each)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := Dial(context.Background(), path)
			if err != nil {
				tb.Error(err)
				return
			}
			defer c.Close()
			for j, csr := range csrs[i] {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := c.Issue(ctx, fmt.Sprintf("c%d-%d", i, j), csr)
				cancel()
				if err != nil {
					tb.Errorf("honest client %d: %v", i, err)
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return ok.Load()
}

// BenchmarkAgentUnderAttack gives the figures: 8 honest clients issuing
// alone, then with 1,000 idle and 100 non-reading clients connected; the
// agent's largest heap in use and RSS meanwhile (all in this process: the
// attackers' side is raw sockets and little memory).
func BenchmarkAgentUnderAttack(b *testing.B) {
	d, _ := dak(b)
	const honestN, each = 8, 50
	for _, attack := range []bool{false, true} {
		name := "alone"
		if attack {
			name = "1000idle+100nonreading"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				path := filepath.Join(shortDir(b), "agent.sock")
				srv := newServer(b, d, nil)
				srv.MaxClients = 2048              // hold all 1,000 idle connections
				srv.WriteTimeout = 2 * time.Second // non-reading clients dropped (and back) during the run
				srv.Logf = func(string, ...any) {}
				r := start(b, srv, path)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var drops atomic.Int64
				if attack {
					for range 1000 {
						nc, err := net.Dial("unix", path)
						if err != nil {
							b.Fatal(err)
						}
						defer nc.Close()
					}
					for range 100 {
						wg.Go(func() {
							for {
								if _, err := pipeliner(path, stop); err != nil {
									drops.Add(1)
								}
								select {
								case <-stop:
									return
								default:
								}
							}
						})
					}
					time.Sleep(time.Second) // the attack under way
				}
				goruntime.GC()
				w := watchHeap()
				began := time.Now()
				n := honest(b, path, honestN, each)
				took := time.Since(began)
				close(stop)
				wg.Wait()
				heap, rssMax := w.end()
				r.stop()
				b.ReportMetric(float64(n)/took.Seconds(), "issued/s")
				b.ReportMetric(float64(heap)/mib, "heapMiB")
				b.ReportMetric(float64(rssMax)/mib, "rssMiB")
				b.Logf("%s: %d honest clients issued %d in %v (%.1f/s); heap in use at most %.1f MiB, RSS at most %.1f MiB; non-reading clients dropped %d times",
					name, honestN, n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(heap)/mib, float64(rssMax)/mib, drops.Load())
			}
		})
	}
}

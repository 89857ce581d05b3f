package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/pki"
	"hilbench/harness/signer"
	"hilbench/harness/signer/audit"
)

// Figures, not assertions: run with
//
//	go test -run '^$' -bench . -benchtime 2000x ./harness/signer/agent
//
// "bare" is the agent without budget and audit log (the transport and
// queue alone); "durable" adds the budget reservation and the audit record,
// each fsynced, on both sides of the comparison.

func benchState(b *testing.B, durable bool) *state {
	if !durable {
		return nil
	}
	return openState(b, b.TempDir(), 0)
}

// BenchmarkDirectIssue is pki.Issuer in-process: the floor the agent adds to.
func BenchmarkDirectIssue(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(mode(durable), func(b *testing.B) {
			d, _ := dak(b)
			st := benchState(b, durable)
			is := &pki.Issuer{Profile: profile(b), Signer: d, CA: d.Chain()[0]}
			csrs := makeCSRs(b, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if st != nil {
					if _, err := st.budget.Reserve(); err != nil {
						b.Fatal(err)
					}
				}
				issued, err := is.Issue(csrs[i])
				if err != nil {
					b.Fatal(err)
				}
				if st != nil {
					if err := st.audit.Append(audit.FromIssued(issued)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkAgentIssue is one client issuing sequentially through the agent:
// per-request latency. The difference to BenchmarkDirectIssue is the
// agent's overhead per request.
func BenchmarkAgentIssue(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(mode(durable), func(b *testing.B) {
			d, _ := dak(b)
			path := filepath.Join(shortDir(b), "agent.sock")
			start(b, newServer(b, d, benchState(b, durable)), path)
			c := dial(b, path)
			csrs := makeCSRs(b, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := c.Issue(context.Background(), "bench", csrs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAgentIssueParallel is 8 clients (8 connections) issuing at
// once: throughput of one agent with an in-memory DAK.
func BenchmarkAgentIssueParallel(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(mode(durable)+"/clients=8", func(b *testing.B) {
			d, _ := dak(b)
			path := filepath.Join(shortDir(b), "agent.sock")
			start(b, newServer(b, d, benchState(b, durable)), path)
			runClients(b, path, 8, makeCSRs(b, b.N))
		})
	}
}

// BenchmarkAgentYubiKeyLike is 8 clients against a DAK that takes 70 ms
// per signature, as a YubiKey 5 does: the key should be busy all the time
// (key_busy_% near 100) and throughput near 1/70 ms = 14.3/s.
func BenchmarkAgentYubiKeyLike(b *testing.B) {
	d, _ := dak(b)
	const perSignature = 70 * time.Millisecond
	fs := &fakeSigner{Signer: d, delay: perSignature}
	path := filepath.Join(shortDir(b), "agent.sock")
	start(b, newServer(b, fs, openState(b, b.TempDir(), 0)), path)
	csrs := makeCSRs(b, b.N)
	elapsed := runClients(b, path, 8, csrs)
	b.ReportMetric(100*float64(fs.calls.Load())*perSignature.Seconds()/elapsed.Seconds(), "key_busy_%")
}

// runClients issues csrs through n clients at once and reports requests/s.
func runClients(b *testing.B, path string, n int, csrs [][]byte) time.Duration {
	clients := make([]*Client, n)
	for i := range clients {
		clients[i] = dial(b, path)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if k >= int64(len(csrs)) {
					return
				}
				if _, err := c.Issue(context.Background(), fmt.Sprint("client", i), csrs[k]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(len(csrs))/elapsed.Seconds(), "issued/s")
	return elapsed
}

func mode(durable bool) string {
	if durable {
		return "durable"
	}
	return "bare"
}

var _ signer.Signer = (*fakeSigner)(nil)

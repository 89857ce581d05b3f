package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/signer"
)

// Figures, not assertions: run with
//
//	go test -run '^$' -bench . -benchtime 2000x ./harness/signer/agent
//
// Every issuance through the agent goes through the pipeline: a reservation
// in a SQLite ledger (WAL, synchronous=FULL) with the DAK budget, the
// signature, the audit record (fsynced) and the ledger's issued record.

// BenchmarkDirectIssue is the floor the agent adds to: pki.Issuer alone
// ("pki"), and the whole pipeline in-process ("pipeline": ledger and audit
// log, as a station signing directly does).
func BenchmarkDirectIssue(b *testing.B) {
	b.Run("pki", func(b *testing.B) {
		d, _ := dak(b)
		is := &pki.Issuer{Profile: profile(b), Signer: d, CA: d.Chain()[0]}
		csrs := makeCSRs(b, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := is.Issue(csrs[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pipeline", func(b *testing.B) {
		d, _ := dak(b)
		p := openState(b, b.TempDir(), 0).pipeline(b, d)
		csrs := makeCSRs(b, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := p.Issue(context.Background(), device.IssueRequest{Target: "bench", CSRPEM: csrs[i]}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAgentIssue is one client issuing sequentially through the agent:
// per-request latency. The difference to BenchmarkDirectIssue/pipeline is
// the agent's overhead per request.
func BenchmarkAgentIssue(b *testing.B) {
	d, _ := dak(b)
	path := filepath.Join(shortDir(b), "agent.sock")
	start(b, newServer(b, d, nil), path)
	c := dial(b, path)
	csrs := makeCSRs(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Issue(context.Background(), "bench", csrs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAgentIssueParallel is 8 clients (8 connections) issuing at
// once: throughput of one agent with an in-memory DAK and a SQLite ledger.
func BenchmarkAgentIssueParallel(b *testing.B) {
	b.Run("clients=8", func(b *testing.B) {
		d, _ := dak(b)
		path := filepath.Join(shortDir(b), "agent.sock")
		start(b, newServer(b, d, nil), path)
		runClients(b, path, 8, makeCSRs(b, b.N))
	})
}

// BenchmarkAgentYubiKeyLike is 8 clients against a DAK that takes 70 ms
// per signature, as a YubiKey 5 does: the key should be busy all the time
// (key_busy_% near 100) and throughput near 1/70 ms = 14.3/s.
func BenchmarkAgentYubiKeyLike(b *testing.B) {
	d, _ := dak(b)
	const perSignature = 70 * time.Millisecond
	fs := &fakeSigner{Signer: d, delay: perSignature}
	path := filepath.Join(shortDir(b), "agent.sock")
	start(b, newServer(b, fs, nil), path)
	csrs := makeCSRs(b, b.N)
	elapsed := runClients(b, path, 8, csrs)
	b.ReportMetric(100*float64(fs.calls.Load())*perSignature.Seconds()/elapsed.Seconds(), "key_busy_%")
}

// runClients issues csrs through n clients at once and reports issued/s.
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

var _ signer.Signer = (*fakeSigner)(nil)

package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"hilbench/harness/bench"
	"hilbench/harness/signer/agent"
	"hilbench/harness/station"
)

const signerUsage = `hil signer: the signing agent, the one process that owns the DAK

  hil signer serve --bench FILE     own the bench's DAK (softdak or yubikey) and sign for every client
                                    over a Unix socket (signer.socket, default <state_dir>/agent.sock),
                                    through the bench's ledger (budget, one chain per device key) and
                                    the audit log in <state_dir>
  hil signer status --bench FILE    ask the agent how it is doing (budget, queue, issued)

Clients use a bench whose signer is {type: agent, socket: PATH, roots: [...]}.
`

func cmdSigner(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("signer", args, []string{"serve", "status"}, signerUsage, stdout, stderr)
	if err != nil {
		return err
	}
	synopsis := "--bench FILE\n\nOwn the bench's DAK and sign for every client over a Unix socket (signer.socket)."
	if sub == "status" {
		synopsis = "--bench FILE\n\nAsk the signing agent how it is doing (budget, queue, issued)."
	}
	fs := newFlags("signer "+sub, synopsis, stdout)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if *benchFile == "" {
		return fmt.Errorf("%w: --bench FILE is required", errUsage)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	socket := station.SocketPath(b)
	if sub == "status" {
		c, err := agent.Dial(ctx, socket)
		if err != nil {
			return err
		}
		defer c.Close()
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agent pid %d on %s, up %s\nDAK: %s\nledger: %s\n", st.PID, socket,
			st.Uptime().Round(time.Second), st.DAK, st.Ledger)
		switch {
		case st.Budget != nil:
			fmt.Fprintf(stdout, "budget: %+v\n", *st.Budget)
		case st.LedgerError != "":
			fmt.Fprintf(stdout, "budget: unknown (%s)\n", st.LedgerError)
		}
		fmt.Fprintf(stdout, "issued %d, reused %d, rejected %d, queue %d, clients %d\n", st.Issued, st.Reused, st.Rejected, st.Queue, st.Clients)
		return nil
	}
	if b.Signer.Type == bench.SignerAgent {
		return fmt.Errorf("the bench's signer is itself an agent (%s): serve a bench whose signer is softdak or yubikey", b.Signer.Socket)
	}
	dak, err := station.OpenSigner(ctx, b, time.Now())
	if err != nil {
		return err
	}
	if c, ok := dak.(io.Closer); ok {
		defer c.Close()
	}
	profile, err := station.LoadProfile(b)
	if err != nil {
		return err
	}
	printProfileNotes(stderr, profile)
	roots, err := station.Roots(b)
	if err != nil {
		return err
	}
	if len(roots) == 0 {
		roots = dak.Chain()[:1] // the DAK certificate itself
	}
	logger := log.New(stdout, "hil signer: ", log.LstdFlags|log.Lmicroseconds)

	// The pipeline: the bench's ledger (budget, one chain per device key) and the audit log in
	// the signer's state directory, checked against each other and an earlier budget file.
	p, err := station.OpenPipeline(ctx, b, dak, profile, roots, logger.Printf)
	if err != nil {
		return err
	}
	defer p.Close()
	p.RunID = "signer-" + time.Now().UTC().Format("20060102T150405Z")
	srv := &agent.Server{
		Pipeline:    p,
		Description: dak.Description(),
		Logf:        logger.Printf,
		OnReady: func(path string) {
			logger.Printf("serving %s on %s", dak.Description(), path)
		},
	}
	return srv.Serve(ctx, socket) // refuses a ledger that counts fewer signatures than the audit log holds
}

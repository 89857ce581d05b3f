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
                                    over a Unix socket (signer.socket, default <state_dir>/agent.sock)
  hil signer status --bench FILE    ask the agent how it is doing (budget, queue, issued)

Clients use a bench whose signer is {type: agent, socket: PATH, roots: [...]}.
`

func cmdSigner(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "serve" && args[0] != "status") {
		fmt.Fprint(stderr, signerUsage)
		return fmt.Errorf("%w: hil signer serve|status --bench FILE", errUsage)
	}
	sub := args[0]
	fs := newFlags("signer "+sub, stderr)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	if err := parseFlags(fs, args[1:]); err != nil {
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
		fmt.Fprintf(stdout, "agent pid %d on %s, up %s\nDAK: %s\n", st.PID, socket, time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second), st.DAK)
		if st.Budget != nil {
			fmt.Fprintf(stdout, "budget: %+v\n", *st.Budget)
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
	bud, audit, err := station.OpenLedger(b, dak.Chain()[0])
	if err != nil {
		return err
	}
	defer bud.Close()
	defer audit.Close()
	logger := log.New(stdout, "hil signer: ", log.LstdFlags|log.Lmicroseconds)
	for _, w := range audit.Warnings() {
		logger.Print(w)
	}
	srv := &agent.Server{
		Signer:   dak,
		Profile:  profile,
		Validity: station.Validity(b),
		Budget:   bud,
		Audit:    audit,
		Logf:     logger.Printf,
		OnReady: func(path string) {
			logger.Printf("serving %s on %s", dak.Description(), path)
		},
	}
	return srv.Serve(ctx, socket)
}

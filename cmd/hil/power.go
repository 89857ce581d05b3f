package main

import (
	"context"
	"fmt"
	"io"

	"hilbench/harness/bench"
	"hilbench/harness/power"
)

const powerUsage = `hil power: switch a target's power (its power: section: relay command, USB hub port, simulator)

  hil power on --bench FILE TARGET
  hil power off --bench FILE TARGET
  hil power cycle --bench FILE TARGET
  hil power state --bench FILE TARGET
`

func cmdPower(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	action, rest, err := subcommand("power", args, []string{"on", "off", "cycle", "state"}, powerUsage, stdout, stderr)
	if err != nil {
		return err
	}
	what := "Switch the target's power " + action + " and print its state."
	if action == "state" {
		what = "Print the target's power state."
	}
	fs := newFlags("power "+action, "--bench FILE TARGET\n\n"+what, stdout)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	// The target is the one positional argument; flags may come before or after it.
	var target string
	for i, a := range rest {
		if len(a) > 0 && a[0] != '-' && (i == 0 || rest[i-1] != "--bench" && rest[i-1] != "-bench") {
			target = a
			rest = append(append([]string{}, rest[:i]...), rest[i+1:]...)
			break
		}
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if *benchFile == "" || target == "" {
		return fmt.Errorf("%w: hil power %s --bench FILE TARGET", errUsage, action)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	t, err := b.Target(target)
	if err != nil {
		return err
	}
	pw, err := power.ForTarget(t)
	if err != nil {
		return err
	}
	defer power.Close(pw)
	switch action {
	case "on":
		err = pw.On(ctx)
	case "off":
		err = pw.Off(ctx)
	case "cycle":
		err = pw.Cycle(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s: power %s: %w", t.Name, action, err)
	}
	st, err := pw.State(ctx)
	if err != nil {
		return fmt.Errorf("%s: reading power state: %w", t.Name, err)
	}
	fmt.Fprintf(stdout, "%s: power %s\n", t.Name, st)
	return nil
}

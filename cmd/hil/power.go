package main

import (
	"context"
	"fmt"
	"io"

	"hilbench/harness/bench"
	"hilbench/harness/power"
)

func cmdPower(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: hil power on|off|cycle|state --bench FILE TARGET", errUsage)
	}
	action := args[0]
	switch action {
	case "on", "off", "cycle", "state":
	default:
		return fmt.Errorf("%w: unknown power action %q (want on, off, cycle or state)", errUsage, action)
	}
	fs := newFlags("power "+action, stderr)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	// The target is the one positional argument; flags may come before or after it.
	rest := args[1:]
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

// Command hil is hilbench's one binary: simulated benches, provisioning, verification, flashing,
// power control and DAK set-up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

const usage = `hil: hardware-in-the-loop provisioning and test harness

Usage:
  hil sim [--n N] [--modules M] [flags]    start simulated ACS devices (and ACK modules) and write bench files
  hil sim image --version V --out FILE     a firmware image for the simulated devices' boot ROM
  hil sim yubikey [flags]                  plug a virtual YubiKey into pcscd (vpcd) until stopped
  hil provision --bench FILE (--target NAME | --all) [flags]
                                           give devices their DHA identity
  hil verify --bench FILE (--target NAME | --all) [--reboot] [--factory-reset]
                                           read each identity back and verify it against the ledger's record
                                           (and again after reboot / reset)
  hil dak init [--dir DIR] [flags]         make a development software DAK for benches without one
  hil yubikey COMMAND [flags]              list, status, unblock, change-pin, set-retries, init-dak, import-cert
  hil signer serve|status --bench FILE     the signing agent: one process owns the DAK, clients ask it to sign
  hil ledger list|show|export|check|import --bench FILE
                                           the record of every identity issued: query, export, prove consistent
  hil flash --bench FILE --target NAME [--expect-version V] IMAGE
                                           write a firmware image (raw, Intel HEX, .dfu) and check it booted
  hil power on|off|cycle|state --bench FILE TARGET
                                           switch a target's power (relay command, USB hub port, simulator)
  hil sign --bench FILE [--csr FILE [--out FILE] | --csr-dir DIR --out DIR]
                                           sign device CSRs with the DAK (CSR on stdin, chain on stdout)
  hil station --bench FILE --plan PLAN [--listen ADDR] [--operator ID] [--max-duts N]
                                           the end-of-line station: every slot runs the test plan, DUT after DUT
  hil soak --bench FILE --cycles N [--faults power_cut,noise] [--seed S]
                                           nightly soak: reboot, reset, reflash, power loss; identity checked each step
  hil labels --bench FILE (--device ID | --all) --out DIR
                                           FFS product labels (Data Matrix, Code 128) from the ledger's records
  hil control-log --bench FILE --format ffs|sidewalk --out DIR
                                           the FFS or Sidewalk control log of the devices not yet logged
  hil reconcile --serials FILE.csv --logs DIR [--bench FILE]
                                           check a serial-number CSV against the Sidewalk control logs

Run "hil COMMAND -h" (or --help) for a command's usage and flags.

Exit status:
  0  success (and -h/--help)
  1  a target failed, or the run failed (bench file, signer, ledger, device)
  2  usage: unknown command or flag, missing or bad argument
`

// commands are hil's commands, in the order of the usage text.
var commands = []string{"sim", "provision", "verify", "dak", "yubikey", "signer", "ledger", "flash", "power", "sign", "station", "soak", "labels", "control-log", "reconcile", "help"}

// errUsage marks errors that are the user's command line, answered with exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "hil:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "hil:", err)
		os.Exit(1)
	}
}

// run runs one command line. It returns nil on success and after -h/--help, an error
// wrapping errUsage for a usage error (exit status 2), any other error when the run or a
// target failed (exit status 1).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "sim":
		if len(args) > 1 && args[1] == "yubikey" {
			return cmdSimYubiKey(ctx, args[2:], stdout, stderr)
		}
		if len(args) > 1 && args[1] == "image" {
			return cmdSimImage(args[2:], stdout, stderr)
		}
		if len(args) > 1 && args[1] != "" && args[1][0] != '-' {
			fmt.Fprint(stderr, simUsage)
			return fmt.Errorf("%w: unknown sim command %q (commands: image, yubikey; or hil sim [flags])", errUsage, args[1])
		}
		return cmdSim(ctx, args[1:], stdout, stderr)
	case "provision":
		return cmdProvision(ctx, args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(ctx, args[1:], stdout, stderr)
	case "dak":
		_, rest, err := subcommand("dak", args[1:], []string{"init"}, dakUsage, stdout, stderr)
		if err != nil {
			return err
		}
		return cmdDakInit(rest, stdout, stderr)
	case "yubikey":
		return cmdYubiKey(ctx, args[1:], stdout, stderr)
	case "signer":
		return cmdSigner(ctx, args[1:], stdout, stderr)
	case "ledger":
		return cmdLedger(ctx, args[1:], stdout, stderr)
	case "power":
		return cmdPower(ctx, args[1:], stdout, stderr)
	case "flash":
		return cmdFlash(ctx, args[1:], stdout, stderr)
	case "sign":
		return cmdSign(ctx, args[1:], stdout, stderr)
	case "station":
		return cmdStation(ctx, args[1:], stdout, stderr)
	case "soak":
		return cmdSoak(ctx, args[1:], stdout, stderr)
	case "labels":
		return cmdLabels(ctx, args[1:], stdout, stderr)
	case "control-log":
		return cmdControlLog(ctx, args[1:], stdout, stderr)
	case "reconcile":
		return cmdReconcile(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q (commands: %s)", errUsage, args[0], strings.Join(commands, ", "))
	}
}

// subcommand picks the command of a group ("hil ledger list"): args[0] must be one of cmds.
// With no command it prints the group's usage on stderr (a usage error); with -h, --help or
// help it prints it on stdout and returns flag.ErrHelp (exit status 0).
func subcommand(group string, args, cmds []string, usage string, stdout, stderr io.Writer) (string, []string, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, fmt.Errorf("%w: hil %s needs a command (commands: %s)", errUsage, group, strings.Join(cmds, ", "))
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return "", nil, flag.ErrHelp
	}
	if !slices.Contains(cmds, args[0]) {
		fmt.Fprint(stderr, usage)
		return "", nil, fmt.Errorf("%w: unknown %s command %q (commands: %s)", errUsage, group, args[0], strings.Join(cmds, ", "))
	}
	return args[0], args[1:], nil
}

// newFlags makes the flag set of one command ("provision", "yubikey status"), which reports
// errors instead of exiting. synopsis is what follows "hil NAME" in its usage: the arguments,
// then optionally a line break and what the command does. -h/--help prints the usage and the
// flags on stdout.
func newFlags(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hil "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: hil %s %s\n", name, strings.TrimRight(synopsis, "\n"))
		if flagNames(fs) != "" {
			fmt.Fprintln(stdout, "\nFlags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parseFlags parses a command's flags; it takes no positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, fs.Name(), fs.Arg(0))
	}
	return nil
}

// parseFlagsArgs parses a command's flags and leaves its positional arguments in fs.Args().
// -h/--help prints the usage on stdout and returns flag.ErrHelp; a bad flag is a usage error
// that names the flag and lists the command's flags.
func parseFlagsArgs(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err == nil {
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return flag.ErrHelp
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		msg = "unknown flag " + f
	}
	names := flagNames(fs)
	if names == "" {
		return fmt.Errorf("%w: %s: %s (it takes no flags)", errUsage, fs.Name(), msg)
	}
	return fmt.Errorf("%w: %s: %s (flags: %s)", errUsage, fs.Name(), msg, names)
}

// flagNames lists a flag set's flags: "--bench, --target".
func flagNames(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	return strings.Join(names, ", ")
}

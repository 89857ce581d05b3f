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

Run "hil COMMAND -h" for a command's flags.
`

// errUsage marks errors that are the user's command line, answered with exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "hil:", err)
		os.Exit(2)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "hil:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
		return cmdSim(ctx, args[1:], stdout, stderr)
	case "provision":
		return cmdProvision(ctx, args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(ctx, args[1:], stdout, stderr)
	case "dak":
		if len(args) < 2 || args[1] != "init" {
			return fmt.Errorf("%w: hil dak init [flags]", errUsage)
		}
		return cmdDakInit(args[2:], stdout, stderr)
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
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
}

// newFlags makes a command's flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hil "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

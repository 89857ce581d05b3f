package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	yksim "hilbench/harness/signer/yubikey/sim"
)

// cmdSimYubiKey plugs a virtual YubiKey into pcscd through vpcd until stopped. SIGUSR1 pulls it
// out, SIGUSR2 plugs it back in: the fault tests' unplug/replug control.
func cmdSimYubiKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim yubikey", "[--state FILE] [--vpcd ADDR] [--serial N] [--sign-time D]\n\nPlug a virtual YubiKey into pcscd (vpcd) until stopped; SIGUSR1 unplugs it, SIGUSR2 plugs it back.", stdout)
	state := fs.String("state", "hil-sim/yubikey.json", "file holding the card's keys, certificates and counters (created when absent)")
	addr := fs.String("vpcd", yksim.DefaultAddr, "vpcd reader slot to plug into (host:port; 35963 = \"Virtual PCD 00 00\", 35964 = \"... 00 01\")")
	serial := fs.Uint("serial", uint(yksim.DefaultSerial), "serial number of a new card")
	signTime := fs.Duration("sign-time", 0, fmt.Sprintf("each signature takes at least this long, as on a real token (a YubiKey 5's P-256 signature: %v); 0: as fast as this machine signs", yksim.YubiKey5P256SignTime))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*state), 0o700); err != nil {
		return err
	}
	if *signTime < 0 {
		return fmt.Errorf("%w: --sign-time %v is negative", errUsage, *signTime)
	}
	card, err := yksim.Open(*state, yksim.Options{Serial: uint32(*serial), SignTime: *signTime})
	if err != nil {
		return err
	}
	// The attestation root lets benches verify f9 attestations of this card (attestation_roots).
	root := filepath.Join(filepath.Dir(*state), "yubikey-attestation-root.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: card.AttestationRoot().Raw}), 0o644); err != nil {
		return err
	}
	p, err := yksim.Plug(ctx, *addr, card)
	if err != nil {
		return fmt.Errorf("plugging the virtual YubiKey into vpcd at %s (is pcscd running with vsmartcard-vpcd?): %w", *addr, err)
	}
	defer p.Close()
	select {
	case <-p.Ready():
	case <-ctx.Done():
		return nil
	}
	v := card.Version()
	fmt.Fprintf(stdout, "virtual YubiKey serial %d, firmware %d.%d.%d, plugged into vpcd %s\n", card.Serial(), v[0], v[1], v[2], *addr)
	fmt.Fprintf(stdout, "state %s; attestation root %s\n", *state, root)
	fmt.Fprintf(stdout, "kill -USR1 %d pulls it out, kill -USR2 %d plugs it back; Ctrl-C stops\n", os.Getpid(), os.Getpid())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sig)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				err = p.Unplug()
				fmt.Fprintln(stdout, "unplugged")
			} else {
				err = p.Replug()
				fmt.Fprintln(stdout, "plugged in")
			}
			if err != nil {
				fmt.Fprintln(stderr, "hil sim yubikey:", err)
			}
		}
	}
}

package main

import (
	"context"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/signer/yubikey"
)

const yubikeyUsage = `hil yubikey: administer the YubiKey that holds the DAK

  hil yubikey list                         serial numbers of the YubiKeys present
  hil yubikey status --serial N            firmware, PIN/PUK retries, slots, certificates, attestation
  hil yubikey unblock --serial N           new PIN after 3 wrong ones (asks for the PUK: never on the line)
  hil yubikey change-pin --serial N
  hil yubikey set-retries --serial N --pin-tries P --puk-tries Q   (resets PIN and PUK to the defaults)
  hil yubikey init-dak --serial N --pin-policy once --touch-policy never --cn NAME --csr dak.csr
                                           generate the DAK on the key (self-managed keys, the ACK YubiKey guide)
  hil yubikey import-cert --serial N --cert dak-certificate.pem
                                           store the DAK certificate after checking it matches the slot key

Common flags: --reader (PC/SC reader name filter, default "yubikey"), --slot (default 9c).
Secrets are asked for at the terminal, never taken from flags, files or the environment.
`

func cmdYubiKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, yubikeyUsage)
		return fmt.Errorf("%w: hil yubikey COMMAND", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("yubikey "+sub, stderr)
	serial := fs.Uint("serial", 0, "serial number of the YubiKey")
	reader := fs.String("reader", "", `PC/SC reader name filter (default "yubikey"; "Virtual PCD" for the virtual YubiKey)`)
	slotName := fs.String("slot", "9c", "PIV slot of the DAK")
	allowLast := fs.Bool("allow-last-retry", false, "present a PIN or PUK even when only one retry remains")
	// command-specific
	pinTries := fs.Int("pin-tries", 3, "set-retries: PIN retries")
	pukTries := fs.Int("puk-tries", 3, "set-retries: PUK retries")
	pinPolicy := fs.String("pin-policy", "", "init-dak: never|once|always (required)")
	touchPolicy := fs.String("touch-policy", "", "init-dak: never|always|cached (required)")
	cn := fs.String("cn", "", "init-dak: common name of the DAK")
	org := fs.String("o", "", "init-dak: organisation of the DAK")
	csrFile := fs.String("csr", "dak.csr", "init-dak: where to write the DAK CSR")
	attFile := fs.String("attestation", "dak-attestation.pem", "init-dak: where to write the attestation chain")
	replace := fs.Bool("replace", false, "init-dak: destroy a key already in the slot")
	certFile := fs.String("cert", "", "import-cert: the DAK certificate (PEM)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	admin := &yubikey.Admin{Reader: *reader, AllowLastRetry: *allowLast}
	if sub == "list" {
		cards, err := admin.List(ctx)
		if err != nil {
			return err
		}
		for _, c := range cards {
			if c.Err != nil {
				fmt.Fprintf(stdout, "%-10s %s (%v)\n", "?", c.Reader, c.Err)
			} else {
				fmt.Fprintf(stdout, "%-10d %s\n", c.Serial, c.Reader)
			}
		}
		if len(cards) == 0 {
			fmt.Fprintln(stdout, "no YubiKey found")
		}
		return nil
	}
	if *serial == 0 {
		return fmt.Errorf("%w: --serial is required (see hil yubikey list)", errUsage)
	}
	sn := uint32(*serial)
	slot, err := yubikey.ParseSlot(*slotName)
	if err != nil {
		return fmt.Errorf("%w: --slot: %v", errUsage, err)
	}
	switch sub {
	case "status":
		rep, err := admin.Status(ctx, sn)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rep.String())
		return nil
	case "unblock":
		puk, err := readSecret("PUK: ")
		if err != nil {
			return err
		}
		pin, err := readNewPIN()
		if err != nil {
			return err
		}
		if err := admin.Unblock(ctx, sn, puk, pin); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "PIN set; update the station's PIN file")
		return nil
	case "change-pin":
		old, err := readSecret("current PIN: ")
		if err != nil {
			return err
		}
		pin, err := readNewPIN()
		if err != nil {
			return err
		}
		if err := admin.ChangePIN(ctx, sn, old, pin); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "PIN changed; update the station's PIN file")
		return nil
	case "set-retries":
		key, err := managementKey()
		if err != nil {
			return err
		}
		pin, err := readSecret("PIN: ")
		if err != nil {
			return err
		}
		if err := admin.SetRetries(ctx, sn, key, pin, *pinTries, *pukTries); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "retries set to %d (PIN) and %d (PUK); PIN and PUK are back to their defaults: change both now\n", *pinTries, *pukTries)
		return nil
	case "init-dak":
		if *cn == "" {
			return fmt.Errorf("%w: --cn is required", errUsage)
		}
		pp, err := yubikey.ParsePINPolicy(*pinPolicy)
		if err != nil {
			return fmt.Errorf("%w: --pin-policy: %v", errUsage, err)
		}
		tp, err := yubikey.ParseTouchPolicy(*touchPolicy)
		if err != nil {
			return fmt.Errorf("%w: --touch-policy: %v", errUsage, err)
		}
		key, err := managementKey()
		if err != nil {
			return err
		}
		pin, err := readSecret("PIN (for the new key to sign its CSR): ")
		if err != nil {
			return err
		}
		subject := pkix.Name{CommonName: *cn}
		if *org != "" {
			subject.Organization = []string{*org}
		}
		res, err := admin.InitDAK(ctx, sn, yubikey.InitOptions{Slot: slot, ManagementKey: key, PIN: pin,
			PINPolicy: pp, TouchPolicy: tp, Subject: subject, CSRFile: *csrFile, AttestationFile: *attFile, Replace: *replace})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "DAK generated on YubiKey %d slot %s; CSR %s, attestation %s\n", res.Serial, *slotName, res.CSRFile, res.AttestationFile)
		fmt.Fprintln(stdout, "have the CSR signed, then: hil yubikey import-cert --serial", sn, "--cert dak-certificate.pem")
		return nil
	case "import-cert":
		if *certFile == "" {
			return fmt.Errorf("%w: --cert is required", errUsage)
		}
		data, err := os.ReadFile(*certFile)
		if err != nil {
			return err
		}
		key, err := managementKey()
		if err != nil {
			return err
		}
		cert, err := admin.ImportDAKCertificate(ctx, sn, slot, key, data)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stored %s (expires %s) in slot %s\n", cert.Subject, cert.NotAfter.Format("2006-01-02"), *slotName)
		return nil
	default:
		fmt.Fprint(stderr, yubikeyUsage)
		return fmt.Errorf("%w: unknown yubikey command %q", errUsage, sub)
	}
}

// readNewPIN asks for a new PIN twice and checks it is one a YubiKey takes (6-8 characters).
func readNewPIN() (string, error) {
	pin, err := readNewSecret("PIN")
	if err != nil {
		return "", err
	}
	if err := yubikey.ValidatePIN(pin); err != nil {
		return "", err
	}
	return pin, nil
}

// managementKey asks for the PIV management key (hex); empty means the factory default.
func managementKey() ([]byte, error) {
	s, err := readSecret("management key (hex; empty for the factory default): ")
	if err != nil {
		return nil, err
	}
	if s == "" {
		return piv.DefaultManagementKey, nil
	}
	key, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("management key is not hex")
	}
	return key, nil
}

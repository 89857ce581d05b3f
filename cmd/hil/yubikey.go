package main

import (
	"context"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

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
                                           generate the DAK on the key (self-managed keys: ACK "YubiKey Overview")
  hil yubikey import-cert --serial N --cert dak-certificate.pem
                                           store the DAK certificate after checking it matches the slot key

Every command takes --reader (PC/SC reader name filter, default "yubikey"); init-dak and
import-cert take --slot (default 9c). "hil yubikey COMMAND -h" lists a command's flags.
Secrets are asked for at the terminal, never taken from flags, files or the environment.
`

var yubikeyCommands = []string{"list", "status", "unblock", "change-pin", "set-retries", "init-dak", "import-cert"}

// yubikeySynopsis is each yubikey command's usage after "hil yubikey COMMAND".
var yubikeySynopsis = map[string]string{
	"list":        "[--reader FILTER]\n\nThe serial numbers of the YubiKeys present.",
	"status":      "--serial N [--reader FILTER]\n\nFirmware, PIN/PUK retries, slots, certificates, attestation.",
	"unblock":     "--serial N [--reader FILTER] [--allow-last-retry]\n\nSet a new PIN after 3 wrong ones; asks for the PUK at the terminal.",
	"change-pin":  "--serial N [--reader FILTER] [--allow-last-retry]\n\nChange the PIN; asks for the current and the new PIN at the terminal.",
	"set-retries": "--serial N --pin-tries P --puk-tries Q [--reader FILTER] [--allow-last-retry]\n\nSet the PIN and PUK retry counts (resets PIN and PUK to the defaults).",
	"init-dak":    "--serial N --pin-policy P --touch-policy T --cn NAME [--o ORG] [--csr FILE] [--attestation FILE] [--slot S] [--replace]\n\nGenerate the DAK on the key and write its CSR and attestation chain.",
	"import-cert": "--serial N --cert FILE [--slot S] [--reader FILTER]\n\nStore the DAK certificate after checking it matches the slot key.",
}

func cmdYubiKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand("yubikey", args, yubikeyCommands, yubikeyUsage, stdout, stderr)
	if err != nil {
		return err
	}
	// Each command has its own flags: a flag another command takes is an error here.
	fs := newFlags("yubikey "+sub, yubikeySynopsis[sub], stdout)
	has := func(cmds ...string) bool { return slices.Contains(cmds, sub) }
	reader := fs.String("reader", "", `PC/SC reader name filter (default "yubikey"; "Virtual PCD" for the virtual YubiKey)`)
	serial, slotName := new(uint), new(string)
	*slotName = "9c"
	if sub != "list" {
		fs.UintVar(serial, "serial", 0, "serial number of the YubiKey (required; see hil yubikey list)")
	}
	if has("init-dak", "import-cert") {
		fs.StringVar(slotName, "slot", "9c", "PIV slot of the DAK")
	}
	allowLast := new(bool)
	if has("unblock", "change-pin", "set-retries", "init-dak") {
		fs.BoolVar(allowLast, "allow-last-retry", false, "present a PIN or PUK even when only one retry remains")
	}
	pinTries, pukTries := new(int), new(int)
	if sub == "set-retries" {
		fs.IntVar(pinTries, "pin-tries", 3, "PIN retries")
		fs.IntVar(pukTries, "puk-tries", 3, "PUK retries")
	}
	pinPolicy, touchPolicy, cn, org, csrFile, attFile := new(string), new(string), new(string), new(string), new(string), new(string)
	replace := new(bool)
	if sub == "init-dak" {
		fs.StringVar(pinPolicy, "pin-policy", "", "never|once|always (required)")
		fs.StringVar(touchPolicy, "touch-policy", "", "never|always|cached (required)")
		fs.StringVar(cn, "cn", "", "common name of the DAK (required)")
		fs.StringVar(org, "o", "", "organisation of the DAK")
		fs.StringVar(csrFile, "csr", "dak.csr", "where to write the DAK CSR")
		fs.StringVar(attFile, "attestation", "dak-attestation.pem", "where to write the attestation chain")
		fs.BoolVar(replace, "replace", false, "destroy a key already in the slot")
	}
	certFile := new(string)
	if sub == "import-cert" {
		fs.StringVar(certFile, "cert", "", "the DAK certificate (PEM; required)")
	}
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
	default: // subcommand accepted only yubikeyCommands
		return fmt.Errorf("%w: unknown yubikey command %q (commands: %s)", errUsage, sub, strings.Join(yubikeyCommands, ", "))
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

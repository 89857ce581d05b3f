// Command benchissue issues a certificate chain for every *.csr in a
// directory with pki.Issuer, the way a station would (profile, DAK and CA
// loaded once; then per device: read CSR, check, issue, write chain), and
// prints timings for scripts/bench-issuance.sh.
//
// Output (one line, key=value): devices, startup_us (one-time loading),
// total_us and per_device_us (the per-device loop, file I/O included) and
// issue_only_per_device_us (Issuer.Issue alone).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"hilbench/harness/pki"
	"hilbench/harness/signer/softdak"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchissue:", err)
		os.Exit(1)
	}
}

func run() error {
	conf := flag.String("conf", "", "product profile (device.conf)")
	section := flag.String("extensions", pki.DefaultExtensionsSection, "extensions section")
	caPath := flag.String("ca", "", "DAK certificate PEM")
	keyPath := flag.String("cakey", "", "DAK private key PEM (must not be group/world readable)")
	csrDir := flag.String("csrdir", "", "directory of *.csr files")
	outDir := flag.String("outdir", "", "directory for the chain files (<name>.pem)")
	flag.Parse()
	if *conf == "" || *caPath == "" || *keyPath == "" || *csrDir == "" || *outDir == "" {
		flag.Usage()
		return errors.New("missing flags")
	}

	start := time.Now()
	profile, err := pki.LoadProfile(*conf, pki.ProfileOptions{ExtensionsSection: *section})
	if err != nil {
		return err
	}
	// The station's own DAK loader: the same checks (mode 0600, key matches certificate).
	dak, err := softdak.Open(*keyPath, *caPath)
	if err != nil {
		return err
	}
	chain := dak.Chain()
	is := &pki.Issuer{Profile: profile, Signer: dak, CA: chain[0], Intermediates: chain[1:]}
	csrs, err := filepath.Glob(filepath.Join(*csrDir, "*.csr"))
	if err != nil {
		return err
	}
	sort.Strings(csrs)
	if len(csrs) == 0 {
		return fmt.Errorf("no *.csr in %s", *csrDir)
	}
	startup := time.Since(start)

	loop := time.Now()
	var issuing time.Duration
	for _, path := range csrs {
		csrPEM, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading CSR from %s: %w", path, err)
		}
		t0 := time.Now()
		issued, err := is.Issue(csrPEM)
		issuing += time.Since(t0)
		if err != nil {
			return fmt.Errorf("issuing for %s: %w", path, err)
		}
		name := strings.TrimSuffix(filepath.Base(path), ".csr") + ".pem"
		if err := os.WriteFile(filepath.Join(*outDir, name), issued.ChainPEM, 0o644); err != nil {
			return fmt.Errorf("writing chain: %w", err)
		}
	}
	total := time.Since(loop)
	fmt.Printf("devices=%d startup_us=%d total_us=%d per_device_us=%.1f issue_only_per_device_us=%.1f\n",
		len(csrs), startup.Microseconds(), total.Microseconds(),
		float64(total.Microseconds())/float64(len(csrs)), float64(issuing.Microseconds())/float64(len(csrs)))
	return nil
}

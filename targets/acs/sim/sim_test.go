package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	keyGen   = "ace hal dha key_gen"
	getCSR   = "ace hal dha get_field 0x201"
	getChain = "ace hal dha get_field 0x202"
)

// provision runs the whole cycle against d and returns the stored chain.
func provision(t *testing.T, d *Device, c *console, p pki) []byte {
	t.Helper()
	c.mustRun(keyGen)
	csr := c.mustRun(getCSR)
	chain := p.issue(t, csr)
	path := filepath.Join(d.DataDir(), "dut1.pem")
	if err := os.WriteFile(path, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustRun("ace hal dha set_cert " + path)
	return chain
}

func TestProvisioningCycle(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	p := newPKI(t)

	// Before key_gen there is nothing to print.
	out, rc := c.run(getCSR, 5*time.Second)
	if rc != 1 || !strings.Contains(out, "ace: dha: no DHA key") {
		t.Errorf("CSR without key: exit %d, %q; want exit 1 and an error", rc, out)
	}
	out, rc = c.run(getChain, 5*time.Second)
	if rc != 1 || !strings.Contains(out, "ace: dha: no certificate provisioned") {
		t.Errorf("chain before set_cert: exit %d, %q; want exit 1, 'no certificate provisioned'", rc, out)
	}

	c.mustRun(keyGen)
	csr := c.mustRun(getCSR)
	if !strings.HasPrefix(csr, "-----BEGIN CERTIFICATE REQUEST-----\n") ||
		!strings.HasSuffix(csr, "-----END CERTIFICATE REQUEST-----\n") {
		t.Fatalf("CSR is not one PEM block: %q", csr)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.csr"), []byte(csr), 0o600); err != nil {
		t.Fatal(err)
	}
	// The independent judge: openssl checks the self-signature, and the
	// subject is the one of the product profile.
	verify := openssl(t, dir, "req", "-in", "d.csr", "-verify", "-noout", "-subject")
	if !strings.Contains(verify, "verify OK") || !strings.Contains(verify, "1.3.6.1.4.1.4843.1.3 = A2EXAMPLE0TYPE") {
		t.Errorf("openssl req -verify: %s", verify)
	}
	text := openssl(t, dir, "req", "-in", "d.csr", "-noout", "-text")
	for _, want := range []string{"prime256v1", "ecdsa-with-SHA256", "TLS Web Client Authentication"} {
		if !strings.Contains(text, want) {
			t.Errorf("CSR lacks %q:\n%s", want, text)
		}
	}
	// The CSR is for the key in DHA storage, and a second CSR is for the same key.
	devPub := openssl(t, dir, "pkey", "-in", filepath.Join(d.DHADir(), "dha_key.pem"), "-pubout")
	if csrPub := openssl(t, dir, "req", "-in", "d.csr", "-noout", "-pubkey"); csrPub != devPub {
		t.Errorf("CSR key %q is not the DHA key %q", csrPub, devPub)
	}

	// A chain for another key is refused and stores nothing.
	bad := filepath.Join(d.DataDir(), "other.pem")
	if err := os.WriteFile(bad, p.issue(t, foreignCSR(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, rc = c.run("ace hal dha set_cert "+bad, 10*time.Second)
	if rc == 0 || !strings.Contains(out, "does not match the device DHA key") {
		t.Errorf("foreign chain: exit %d, %q; want refusal", rc, out)
	}
	if _, err := os.Stat(filepath.Join(d.DHADir(), "dha_chain.pem")); err == nil {
		t.Errorf("a refused chain was stored")
	}

	// The right chain is stored and read back byte for byte.
	chain := p.issue(t, csr)
	good := filepath.Join(d.DataDir(), "dut1.pem")
	if err := os.WriteFile(good, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := c.mustRun("ace hal dha set_cert " + good); out != "" {
		t.Errorf("set_cert printed %q on success", out)
	}
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("get_field 0x202 = %q, want %q", got, chain)
	}
}

func TestSetCertRefusesMalformedFiles(t *testing.T) {
	t.Parallel()
	d := startDevice(t, nil)
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	p := newPKI(t)
	c.mustRun(keyGen)
	chain := p.issue(t, c.mustRun(getCSR))
	leafOnly := chain[:bytes.Index(chain, []byte("-----END CERTIFICATE-----"))+26]
	dak, _ := os.ReadFile(p.cert)
	other := newPKI(t)
	otherDAK, _ := os.ReadFile(other.cert)

	cases := map[string]struct {
		content []byte
		msg     string
	}{
		"empty":         {nil, "not a PEM certificate chain"},
		"text":          {[]byte("hello\n"), "not a PEM certificate chain"},
		"csr":           {[]byte(c.mustRun(getCSR)), "not a PEM certificate chain"},
		"leaf only":     {leafOnly, "holds 1 certificate"},
		"junk after":    {append(append([]byte{}, chain...), "trailer\n"...), "not a PEM certificate chain"},
		"wrong issuer":  {append(append([]byte{}, leafOnly...), otherDAK...), "not issued by certificate 2"},
		"unterminated":  {chain[:len(chain)-30], "not a PEM certificate chain"},
		"reversed":      {append(append([]byte{}, dak...), leafOnly...), "does not match"},
		"bad base64 ch": {bytes.Replace(chain, []byte("MII"), []byte("M*I"), 1), "not a PEM certificate chain"},
	}
	for name, tc := range cases {
		path := filepath.Join(d.DataDir(), "case.pem")
		if err := os.WriteFile(path, tc.content, 0o644); err != nil {
			t.Fatal(err)
		}
		out, rc := c.run("ace hal dha set_cert "+path, 10*time.Second)
		if rc != 1 || !strings.Contains(out, tc.msg) {
			t.Errorf("%s: exit %d, %q; want exit 1 and %q", name, rc, out, tc.msg)
		}
	}
	if _, rc := c.run("ace hal dha set_cert "+filepath.Join(d.DataDir(), "missing.pem"), 5*time.Second); rc != 1 {
		t.Errorf("missing file: exit %d, want 1", rc)
	}
	if out, rc := c.run("ace hal dha frobnicate", 5*time.Second); rc != 2 || !strings.Contains(out, "usage") {
		t.Errorf("bad subcommand: exit %d, %q; want usage and exit 2", rc, out)
	}
	if out, rc := c.run("ace hal dha get_field 0x999", 5*time.Second); rc != 1 || !strings.Contains(out, "unknown field") {
		t.Errorf("unknown field: exit %d, %q", rc, out)
	}
	if _, err := os.Stat(filepath.Join(d.DHADir(), "dha_chain.pem")); err == nil {
		t.Errorf("a refused chain was stored")
	}
}

var restartRE = regexp.MustCompile(`reboot: Restarting system\.\r\n`)

func TestChainSurvivesRebootAndFactoryReset(t *testing.T) {
	t.Parallel()
	d := startDevice(t, func(c *Config) { c.Firmware = "acs-9.8.7" })
	c := openConsole(t, d, 115200)
	c.sync(10 * time.Second)
	chain := provision(t, d, c, newPKI(t))
	key, _ := os.ReadFile(filepath.Join(d.DHADir(), "dha_key.pem"))
	if d.Boots() != 1 {
		t.Errorf("Boots = %d before any reboot, want 1", d.Boots())
	}

	// The reboot command: restart message, then the banner, then the prompt.
	c.write("reboot\n")
	if _, err := c.until(restartRE, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	banner, err := c.until(regexp.MustCompile(regexp.QuoteMeta(c.prompt)), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"device dut1", "firmware acs-9.8.7", "boot 2"} {
		if !strings.Contains(banner, want) {
			t.Errorf("boot banner lacks %q: %q", want, banner)
		}
	}
	c.sync(5 * time.Second)
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain after reboot differs")
	}

	// Device.Reboot is the same from outside.
	if err := d.Reboot(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.until(restartRE, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain after Device.Reboot differs")
	}

	// factory_reset wipes /data, never the DHA area.
	c.mustRun("echo hello > " + filepath.Join(d.DataDir(), "user.txt"))
	c.write("factory_reset\n")
	if _, err := c.until(restartRE, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	if entries, _ := os.ReadDir(d.DataDir()); len(entries) != 0 {
		t.Errorf("data/ after factory reset holds %d entries, want 0", len(entries))
	}
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain after factory_reset differs")
	}
	if err := d.FactoryReset(); err != nil {
		t.Fatal(err)
	}
	c.sync(10 * time.Second)
	if got := c.mustRun(getChain); got != string(chain) {
		t.Errorf("chain after Device.FactoryReset differs")
	}
	if key2, _ := os.ReadFile(filepath.Join(d.DHADir(), "dha_key.pem")); !bytes.Equal(key, key2) {
		t.Errorf("DHA key changed across resets")
	}
	if d.Boots() != 5 {
		t.Errorf("Boots = %d after 4 resets, want 5", d.Boots())
	}
}

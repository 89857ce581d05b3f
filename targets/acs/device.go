package acs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"hilbench/harness/console"
	"hilbench/harness/pki"
)

// Steps of the provisioning cycle, as reports name them.
const (
	StepOpen     = "open"
	StepSync     = "sync"
	StepCheck    = "check-provisioned"
	StepKeyGen   = "key_gen"
	StepCSR      = "get_csr"
	StepIssue    = "issue"
	StepUpload   = "upload"
	StepSetCert  = "set_cert"
	StepReadBack = "read_back"
	StepVerify   = "verify"
	StepReboot   = "reboot"
	StepReset    = "factory_reset"
)

// ErrAlreadyProvisioned is returned when a device already holds a DHA chain and the caller did not
// ask to re-provision it: a second key_gen would destroy an identity that may be registered already.
var ErrAlreadyProvisioned = errors.New("device already holds a DHA certificate chain")

// ErrChainMismatch is returned when the chain read back differs from the one issued.
var ErrChainMismatch = errors.New("chain read back differs from the chain issued")

// StepError says which device failed at which step.
type StepError struct {
	Target string
	Step   string
	Err    error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Target, e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// IssueFunc turns a target's CSR into a signed chain (a station signing directly, or a signing
// agent's client). The target names the device in the DAK's audit log.
type IssueFunc func(ctx context.Context, target string, csrPEM []byte) (*pki.Issued, error)

// Device drives one ACS device over its console.
type Device struct {
	cfg Config
	con *console.Console

	mu     sync.Mutex
	issued *pki.Issued // the one certificate issued for this device in this run
	csr    []byte      // the CSR it was issued for
}

// New returns a driver for the device behind con.
func New(con *console.Console, cfg Config) *Device {
	return &Device{cfg: cfg.WithDefaults(), con: con}
}

// Name is the target's name.
func (d *Device) Name() string { return d.cfg.Name }

// Console is the device's console, for callers that need more than the cycle.
func (d *Device) Console() *console.Console { return d.con }

// ChainPath is where the chain file goes on the device before set_cert.
func (d *Device) ChainPath() string { return path.Join(d.cfg.DataDir, d.cfg.Name+".pem") }

func (d *Device) fail(step string, err error) error {
	return &StepError{Target: d.cfg.Name, Step: step, Err: err}
}

// shell runs one command under the command timeout and fails on a non-zero exit status.
func (d *Device) shell(ctx context.Context, step, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	res, err := d.con.Shell(ctx, cmd)
	if err != nil {
		return "", d.fail(step, err)
	}
	if res.Status != 0 {
		return res.Output, d.fail(step, fmt.Errorf("%q exited with status %d: %s", cmd, res.Status, lastLines(res.Output, 5)))
	}
	return res.Output, nil
}

// Sync waits for the shell prompt.
func (d *Device) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	if err := d.con.Sync(ctx); err != nil {
		return d.fail(StepSync, err)
	}
	return nil
}

// Options change how Provision treats a device.
type Options struct {
	// Reprovision replaces an existing identity. Off by default: the existing chain may belong
	// to a device already registered in the field.
	Reprovision bool
	// Roots are the trust anchors the read-back chain must verify to (nil: the DAK certificate).
	Roots []*x509.Certificate
	// Now is the verification time (default time.Now).
	Now func() time.Time
	// Progress, if set, is told each step as it starts.
	Progress func(target, step string)
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) step(target, step string) {
	if o.Progress != nil {
		o.Progress(target, step)
	}
}

// Provision runs the DHA cycle of DESIGN.md on the device: key_gen, CSR, check and issue, upload with
// a digest check, set_cert, read back, compare and verify. It never issues twice for one Device: a
// retry after a failure past the issue step reuses the chain already issued.
func (d *Device) Provision(ctx context.Context, issue IssueFunc, opts Options) (*pki.Issued, error) {
	name := d.cfg.Name
	opts.step(name, StepSync)
	if err := d.Sync(ctx); err != nil {
		return nil, err
	}

	d.mu.Lock()
	issued := d.issued
	d.mu.Unlock()

	if issued == nil {
		opts.step(name, StepCheck)
		chain, err := d.ReadChain(ctx)
		if err != nil && !errors.Is(err, ErrNoChain) {
			return nil, d.fail(StepCheck, err)
		}
		if err == nil && !opts.Reprovision {
			return nil, d.fail(StepCheck, fmt.Errorf("%w (leaf serial %s, SHA-256 %s); pass --reprovision to replace it",
				ErrAlreadyProvisioned, chain[0].SerialNumber.Text(16), pki.Fingerprint(chain[0])))
		}

		opts.step(name, StepKeyGen)
		if _, err := d.shell(ctx, StepKeyGen, d.cfg.Commands.KeyGen); err != nil {
			return nil, err
		}

		opts.step(name, StepCSR)
		out, err := d.shell(ctx, StepCSR, d.cfg.Commands.GetCSR)
		if err != nil {
			return nil, err
		}
		csr, err := extractPEM(out, "CERTIFICATE REQUEST")
		if err != nil {
			return nil, d.fail(StepCSR, err)
		}

		opts.step(name, StepIssue)
		issued, err = issue(ctx, name, csr)
		if err != nil {
			return nil, d.fail(StepIssue, err)
		}
		d.mu.Lock()
		d.issued, d.csr = issued, csr
		d.mu.Unlock()
	}

	opts.step(name, StepUpload)
	if err := d.Upload(ctx, issued.ChainPEM); err != nil {
		return issued, err
	}

	opts.step(name, StepSetCert)
	if _, err := d.shell(ctx, StepSetCert, withPath(d.cfg.Commands.SetCert, shellQuote(d.ChainPath()))); err != nil {
		return issued, err
	}

	opts.step(name, StepReadBack)
	if err := d.Verify(ctx, issued, opts); err != nil {
		return issued, err
	}
	return issued, nil
}

// Issued is the chain issued for this device in this run, if any.
func (d *Device) Issued() *pki.Issued {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.issued
}

// Upload writes data to the chain path with printf commands of at most ChunkSize bytes of payload
// (busybox ash's line editor takes about 1 KiB a line), then checks its SHA-256 on the device.
// PEM is base64 and header lines, so double-quoted printf arguments carry it unchanged (and the
// console's own single quoting of the command leaves them alone, which keeps the lines short).
func (d *Device) Upload(ctx context.Context, data []byte) error {
	if i := bytes.IndexAny(data, "\"$`\\'%\r\t"); i >= 0 {
		return d.fail(StepUpload, fmt.Errorf("chain PEM has %q at byte %d, which the console transfer does not carry", data[i], i))
	}
	dst := shellQuote(d.ChainPath())
	lines := strings.SplitAfter(string(data), "\n")
	redirect := ">"
	for len(lines) > 0 {
		var args []string
		size := 0
		for len(lines) > 0 && (size == 0 || size+len(lines[0]) <= d.cfg.ChunkSize) {
			l := strings.TrimSuffix(lines[0], "\n")
			lines = lines[1:]
			if l == "" && len(lines) == 0 {
				break // the empty string after the final newline
			}
			args = append(args, `"`+l+`"`)
			size += len(l) + 3
		}
		if len(args) == 0 {
			break
		}
		cmd := `printf "%s\n" ` + strings.Join(args, " ") + " " + redirect + " " + dst
		if _, err := d.shell(ctx, StepUpload, cmd); err != nil {
			return err
		}
		redirect = ">>"
	}

	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	out, err := d.shell(ctx, StepUpload, withPath(d.cfg.Commands.Digest, dst))
	if err != nil {
		return err
	}
	fields := strings.Fields(out)
	if len(fields) == 0 || !strings.EqualFold(fields[0], want) {
		return d.fail(StepUpload, fmt.Errorf("chain file %s on the device has SHA-256 %q, want %s", d.ChainPath(), firstField(out), want))
	}
	return nil
}

// ErrNoChain is returned by ReadChain when the device holds no chain.
var ErrNoChain = errors.New("device holds no DHA certificate chain")

// ReadChain reads the stored chain (get_field 0x202). A failing command or an output without a
// certificate means no chain; an output with a broken certificate is an error of its own. The
// device must be at its prompt: Sync first after opening it or restarting it.
func (d *Device) ReadChain(ctx context.Context) ([]*x509.Certificate, error) {
	raw, err := d.ReadChainPEM(ctx)
	if err != nil {
		return nil, err
	}
	chain, err := pki.ParseChainPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing the chain the device printed: %w", err)
	}
	return chain, nil
}

// ReadChainPEM is the chain exactly as the device printed it (LF line ends).
func (d *Device) ReadChainPEM(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	res, err := d.con.Shell(ctx, d.cfg.Commands.GetChain)
	if err != nil {
		return nil, err
	}
	if res.Status != 0 || !strings.Contains(res.Output, "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("%w (%q: status %d, %s)", ErrNoChain, d.cfg.Commands.GetChain, res.Status, lastLines(res.Output, 2))
	}
	start := strings.Index(res.Output, "-----BEGIN CERTIFICATE-----")
	end := strings.LastIndex(res.Output, "-----END CERTIFICATE-----")
	if end < start {
		return nil, fmt.Errorf("chain output is truncated: no END CERTIFICATE after the last BEGIN")
	}
	return []byte(res.Output[start:end+len("-----END CERTIFICATE-----")] + "\n"), nil
}

// Verify reads the chain back and checks it: identical to the issued one (when given), a valid
// path to the roots, and a leaf whose key is the key of the CSR it was issued for.
func (d *Device) Verify(ctx context.Context, want *pki.Issued, opts Options) error {
	chain, err := d.ReadChain(ctx)
	if err != nil {
		return d.fail(StepReadBack, err)
	}
	if want != nil {
		if len(chain) != len(want.Chain) {
			return d.fail(StepReadBack, fmt.Errorf("%w: %d certificates read back, %d issued", ErrChainMismatch, len(chain), len(want.Chain)))
		}
		for i := range chain {
			if !bytes.Equal(chain[i].Raw, want.Chain[i].Raw) {
				return d.fail(StepReadBack, fmt.Errorf("%w: certificate %d (%s) has SHA-256 %s, issued %s",
					ErrChainMismatch, i, chain[i].Subject, pki.Fingerprint(chain[i]), pki.Fingerprint(want.Chain[i])))
			}
		}
		if !pki.SamePublicKey(chain[0].PublicKey, want.CSR.PublicKey) {
			return d.fail(StepVerify, errors.New("leaf public key is not the key of the device's CSR"))
		}
	}
	if err := pki.VerifyChain(chain, opts.Roots, opts.now()); err != nil {
		return d.fail(StepVerify, err)
	}
	return nil
}

// Reboot reboots the device through its console and waits for its prompt.
func (d *Device) Reboot(ctx context.Context) error {
	return d.restart(ctx, StepReboot, d.cfg.Commands.Reboot)
}

// FactoryReset wipes the device's user data and waits for it to come back.
func (d *Device) FactoryReset(ctx context.Context) error {
	return d.restart(ctx, StepReset, d.cfg.Commands.FactoryReset)
}

// restart sends a command that takes the device down, waits for the proof that it went down (the
// reboot marker) so a prompt printed before it cannot be taken for the new boot, then waits for
// the prompt of the new boot.
func (d *Device) restart(ctx context.Context, step, cmd string) error {
	if err := d.Sync(ctx); err != nil {
		return d.fail(step, err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.BootTimeout)
	defer cancel()
	if err := d.con.Send(ctx, cmd+"\n"); err != nil {
		return d.fail(step, err)
	}
	if _, err := d.con.Expect(ctx, d.cfg.RebootMarker); err != nil {
		return d.fail(step, fmt.Errorf("device did not go down after %q: %w", cmd, err))
	}
	if err := d.con.Sync(ctx); err != nil {
		return d.fail(step, fmt.Errorf("no prompt after %q: %w", cmd, err))
	}
	return nil
}

// extractPEM finds exactly one PEM block of the given type in a command's output.
func extractPEM(out, typ string) ([]byte, error) {
	begin := "-----BEGIN " + typ + "-----"
	i := strings.Index(out, begin)
	if i < 0 {
		return nil, fmt.Errorf("no %s in the device's output (%d bytes): %s", typ, len(out), lastLines(out, 3))
	}
	block, rest := pem.Decode([]byte(out[i:]))
	if block == nil {
		return nil, fmt.Errorf("%s in the device's output is truncated or malformed: %s", typ, lastLines(out, 3))
	}
	if strings.Contains(string(rest), begin) {
		return nil, fmt.Errorf("more than one %s in the device's output", typ)
	}
	return pem.EncodeToMemory(block), nil
}

func lastLines(s string, n int) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(no output)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("%q", strings.Join(lines, "\n"))
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// shellQuote quotes s for busybox ash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

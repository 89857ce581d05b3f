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
	"sync/atomic"
	"time"

	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/pki"
)

// Steps of the provisioning cycle that are the ACS family's own, as reports name them; the shared
// ones (check, issue, read back, verify, reboot, factory reset, record) are harness/device's.
const (
	StepSync    = "sync"
	StepKeyGen  = "key_gen"
	StepCSR     = "get_csr"
	StepUpload  = "upload"
	StepSetCert = "set_cert"
)

// Device drives one ACS device over its console.
type Device struct {
	cfg Config
	con *console.Console

	mu     sync.Mutex
	issued *pki.Issued // the one chain issued for this device by this Device (CSR set)
	// ready: the shell prompt was seen since New (Sync, a restart, a flash that booted). Until
	// then the device may still be booting (just opened after a power cycle).
	ready atomic.Bool
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

// Stats are the console's byte counts: tx_bytes, rx_bytes.
func (d *Device) Stats() device.Stats {
	st := d.con.Stats()
	return device.Stats{"tx_bytes": st.TxBytes, "rx_bytes": st.RxBytes}
}

func (d *Device) fail(step string, err error) error { return device.Fail(d.cfg.Name, step, err) }

// shell runs one command under the command timeout and fails on a non-zero exit status.
func (d *Device) shell(ctx context.Context, step, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	res, err := d.con.Shell(ctx, cmd)
	if errors.Is(err, console.ErrNoStatus) && d.cfg.RebootMarker.MatchString(res.Output) {
		// The shell's prompt came without the command's end because a new shell printed it.
		return "", d.fail(step, fmt.Errorf("the device restarted while %q ran (power lost, a watchdog, a crash): %w", cmd, err))
	}
	if err != nil {
		return "", d.fail(step, err)
	}
	if res.Status != 0 {
		return res.Output, d.fail(step, fmt.Errorf("%q exited with status %d: %s", cmd, res.Status, lastLines(res.Output, 5)))
	}
	return res.Output, nil
}

// Sync waits for the shell prompt: up to the command timeout, or the boot timeout when the
// prompt has not been seen since New (the device may still be booting).
func (d *Device) Sync(ctx context.Context) error {
	timeout := d.cfg.CommandTimeout
	if !d.ready.Load() {
		timeout = max(timeout, d.cfg.BootTimeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.con.Sync(ctx); err != nil {
		return d.fail(StepSync, err)
	}
	d.ready.Store(true)
	return nil
}

// ensureReady syncs a device whose prompt has not been seen since New.
func (d *Device) ensureReady(ctx context.Context) error {
	if d.ready.Load() {
		return nil
	}
	return d.Sync(ctx)
}

// Provision runs the DHA cycle, exactly once per device key (harness/device once.go):
//
//   - check: get_field 0x202. A chain the ledger records for the device's key is verified and
//     reported Already; another chain is refused (device.ErrAlreadyProvisioned) unless
//     opts.Reprovision, which replaces it.
//   - get_field 0x201 first, without key_gen: a device whose key an interrupted run made keeps
//     it, and the Issuer hands back the chain it recorded for that key (Result.Reused) or
//     finishes its reservation. key_gen only for a device without a key, a key whose record was
//     replaced, or (Reprovision) the key of the identity being replaced.
//   - issue, upload with a digest check, set_cert (then iss.Stored), read back, device.Verify
//     (then iss.Verified).
//
// A Device issues at most once: a retry after a failure past the issue step reuses the chain it
// got. A failed Provision returns, with its error, a Result holding the chain issued (if any).
func (d *Device) Provision(ctx context.Context, iss device.Issuer, opts device.Options) (*device.Result, error) {
	name := d.cfg.Name
	if iss == nil {
		return nil, d.fail(device.StepIssue, errors.New("no issuer given"))
	}
	opts.Step(name, StepSync)
	if err := d.Sync(ctx); err != nil {
		return nil, err
	}
	mine := d.Issued()

	opts.Step(name, device.StepCheck)
	held, err := d.readChain(ctx)
	if err != nil && !errors.Is(err, device.ErrNoChain) {
		return nil, d.fail(device.StepCheck, err)
	}
	var replaces *x509.Certificate
	if len(held) > 0 {
		if mine != nil && device.SameChain(held, mine.Chain) {
			// An earlier call stored it; its read back failed or was cut short.
			return d.settle(ctx, iss, opts, held, mine, nil)
		}
		known, err := device.CheckHeld(ctx, iss, name, held, opts)
		if err != nil {
			return nil, err
		}
		if known != nil {
			return d.settle(ctx, iss, opts, held, known.Issued, known)
		}
		replaces = held[0]
	}

	opts.Step(name, StepCSR)
	csr, csrPEM, err := d.currentCSR(ctx)
	if err != nil {
		return nil, err
	}
	issued, reused := mine, false
	switch {
	case mine != nil && (csr == nil || !pki.SamePublicKey(csr.PublicKey, mine.CSR.PublicKey)):
		return resultOf(mine), d.fail(device.StepIssue, fmt.Errorf("a chain was issued for this device in this run (leaf %s) for a key it no longer has; refusing a second signature",
			pki.Fingerprint(mine.Certificate)))
	case mine == nil:
		var known *device.Known
		fresh := csr == nil
		if csr != nil {
			if known, err = device.Lookup(ctx, iss, name, StepCSR, csr.PublicKey); err != nil {
				return nil, err
			}
			// The key of the identity being replaced never signs a new one.
			fresh = device.NeedFreshKey(known, opts) || (replaces != nil && pki.SamePublicKey(csr.PublicKey, replaces.PublicKey))
			if fresh && replaces == nil && known.Live() && known.Issued != nil {
				replaces = known.Issued.Certificate
			}
		}
		if fresh {
			opts.Step(name, StepKeyGen)
			if _, err := d.shell(ctx, StepKeyGen, d.cfg.Commands.KeyGen); err != nil {
				return nil, err
			}
			opts.Step(name, StepCSR)
			if csr, csrPEM, err = d.currentCSR(ctx); err != nil {
				return nil, err
			}
			if csr == nil {
				return nil, d.fail(StepCSR, fmt.Errorf("%q reports no key right after %q", d.cfg.Commands.GetCSR, d.cfg.Commands.KeyGen))
			}
			known = nil
		}
		opts.Step(name, device.StepIssue)
		issued, reused, err = device.IssueChain(ctx, iss, device.IssueRequest{Target: name, CSRPEM: csrPEM, Replaces: replaces}, csr.PublicKey, known)
		if err != nil {
			return nil, err
		}
		issued = device.WithCSR(issued, csr)
		d.mu.Lock()
		d.issued = issued
		d.mu.Unlock()
	}
	res := &device.Result{Issued: issued, Reused: reused}

	opts.Step(name, StepUpload)
	if err := d.Upload(ctx, issued.ChainPEM); err != nil {
		return res, err
	}
	opts.Step(name, StepSetCert)
	if _, err := d.shell(ctx, StepSetCert, withPath(d.cfg.Commands.SetCert, shellQuote(d.ChainPath()))); err != nil {
		return res, err
	}
	if err := device.MarkStored(ctx, iss, name, issued.Certificate); err != nil {
		return res, err
	}
	opts.Step(name, device.StepReadBack)
	if err := d.verify(ctx, issued, iss.Roots(), opts.Time()); err != nil {
		return res, err
	}
	if err := device.MarkVerified(ctx, iss, name, issued.Certificate); err != nil {
		return res, err
	}
	return res, nil
}

// settle finishes a device that already holds want's chain (held): it proves the device has the
// leaf's key (its CSR), verifies, and advances the ledger record. known is the ledger's record
// (nil: the chain is this Device's own from an earlier call).
func (d *Device) settle(ctx context.Context, iss device.Issuer, opts device.Options, held []*x509.Certificate, want *pki.Issued, known *device.Known) (*device.Result, error) {
	name := d.cfg.Name
	opts.Step(name, StepCSR)
	csr, _, err := d.currentCSR(ctx)
	if err != nil {
		return nil, err
	}
	if csr == nil {
		return nil, d.fail(device.StepVerify, errors.New("the device holds a chain but reports no key"))
	}
	want = device.WithCSR(want, csr)
	opts.Step(name, device.StepVerify)
	if err := device.VerifyStep(name, held, want, iss.Roots(), opts.Time()); err != nil {
		return nil, err
	}
	if known == nil || known.State == device.StateReserved || known.State == device.StateIssued {
		if err := device.MarkStored(ctx, iss, name, want.Certificate); err != nil {
			return nil, err
		}
	}
	if err := device.MarkVerified(ctx, iss, name, want.Certificate); err != nil {
		return nil, err
	}
	return &device.Result{Issued: want, Already: true}, nil
}

// currentCSR asks the device for a CSR of the key it has (get_field 0x201), without key_gen.
// nil, nil: the device has no key (the command fails saying so, Config.NoKey). A CSR that is
// missing, broken or not self-signed is an error: the device may have a key, so key_gen is not
// the answer.
func (d *Device) currentCSR(ctx context.Context) (*x509.CertificateRequest, []byte, error) {
	cmd := d.cfg.Commands.GetCSR
	cctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	res, err := d.con.Shell(cctx, cmd)
	if err != nil {
		return nil, nil, d.fail(StepCSR, err)
	}
	if res.Status != 0 {
		if d.cfg.NoKey.MatchString(res.Output) {
			return nil, nil, nil
		}
		return nil, nil, d.fail(StepCSR, fmt.Errorf("%q exited with status %d: %s", cmd, res.Status, lastLines(res.Output, 5)))
	}
	csrPEM, err := extractPEM(res.Output, "CERTIFICATE REQUEST")
	if err != nil {
		return nil, nil, d.fail(StepCSR, err)
	}
	block, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, nil, d.fail(StepCSR, fmt.Errorf("the device's CSR does not parse: %w", err))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, d.fail(StepCSR, fmt.Errorf("the device's CSR self-signature does not verify: %w", err))
	}
	return csr, csrPEM, nil
}

func resultOf(is *pki.Issued) *device.Result {
	if is == nil {
		return nil
	}
	return &device.Result{Issued: is}
}

// Issued is the chain issued for this device by this Device, if any.
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

// ReadChain reads the stored chain (get_field 0x202). A failing command or an output without a
// certificate means no chain (device.ErrNoChain); an output with a broken certificate is an error
// of its own. A device just opened is first synced (it may still be booting).
func (d *Device) ReadChain(ctx context.Context) ([]*x509.Certificate, error) {
	if err := d.ensureReady(ctx); err != nil {
		return nil, err
	}
	return d.readChain(ctx)
}

func (d *Device) readChain(ctx context.Context) ([]*x509.Certificate, error) {
	raw, err := d.readChainPEM(ctx)
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
	if err := d.ensureReady(ctx); err != nil {
		return nil, err
	}
	return d.readChainPEM(ctx)
}

func (d *Device) readChainPEM(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	res, err := d.con.Shell(ctx, d.cfg.Commands.GetChain)
	if err != nil {
		return nil, err
	}
	if res.Status != 0 || !strings.Contains(res.Output, "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("%w (%q: status %d, %s)", device.ErrNoChain, d.cfg.Commands.GetChain, res.Status, lastLines(res.Output, 2))
	}
	start := strings.Index(res.Output, "-----BEGIN CERTIFICATE-----")
	end := strings.LastIndex(res.Output, "-----END CERTIFICATE-----")
	if end < start {
		return nil, fmt.Errorf("chain output is truncated: no END CERTIFICATE after the last BEGIN")
	}
	return []byte(res.Output[start:end+len("-----END CERTIFICATE-----")] + "\n"), nil
}

// Verify reads the chain back and checks it with device.Verify: identical to want's (when
// given), its leaf holding the key of want's CSR, a valid path to the roots at now.
func (d *Device) Verify(ctx context.Context, want *pki.Issued, roots []*x509.Certificate, now time.Time) error {
	if err := d.ensureReady(ctx); err != nil {
		return err
	}
	return d.verify(ctx, want, roots, now)
}

func (d *Device) verify(ctx context.Context, want *pki.Issued, roots []*x509.Certificate, now time.Time) error {
	chain, err := d.readChain(ctx)
	if err != nil {
		return d.fail(device.StepReadBack, err)
	}
	return device.VerifyStep(d.cfg.Name, chain, want, roots, now)
}

// Reboot reboots the device through its console and waits for its prompt.
func (d *Device) Reboot(ctx context.Context) error {
	return d.restart(ctx, device.StepReboot, d.cfg.Commands.Reboot)
}

// FactoryReset wipes the device's user data and waits for it to come back.
func (d *Device) FactoryReset(ctx context.Context) error {
	return d.restart(ctx, device.StepReset, d.cfg.Commands.FactoryReset)
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
	d.ready.Store(true)
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

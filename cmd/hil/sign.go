package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"hilbench/harness/awsiot"
	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/harness/station"
)

const signSynopsis = `--bench FILE [--csr FILE [--out FILE] | --csr-dir DIR --out DIR] [flags]

Sign device CSRs with the bench's DAK, as the FFS provisioning guide's CSR Signing
Application does. Without --csr or --csr-dir the CSR comes on standard input and the
chain (device certificate, DAK certificate, intermediates) goes to standard output:
  cat device.csr | hil sign --bench line1.yaml > device-cert-chain.pem
Each CSR is checked against the product profile, counted against the DAK's budget and
recorded in the audit log and the ledger (state issued) before its chain is written;
a key the ledger already holds a chain for gets that chain again, not a new signature.
The PIN (YubiKey) comes from the bench's signer.pin_file only.
--csr-dir signs every *.csr in DIR on all cores into --out DIR as <name>.pem; a refused
CSR is named on standard error and the others go on. On a refusal nothing is written
for that CSR. With an AWS IoT profile (an [aws_iot] section) the CN must be a thing name
and --csr-dir also writes aws-iot-bulk.jsonl and the bulk and JITP provisioning templates.
Exit status 1 when any CSR was refused.`

// maxCSRBytes bounds what is read as one CSR: a P-256 CSR is under 1 KiB of PEM.
const maxCSRBytes = 64 << 10

// signStdin is hil sign's standard input (tests replace it).
var signStdin io.Reader = os.Stdin

// signProgressEvery is how often a batch reports its progress on standard error.
var signProgressEvery = 2 * time.Second

func cmdSign(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sign", signSynopsis, stdout)
	benchFile := fs.String("bench", "", "bench file (YAML): the DAK, its PIN file, the profile and the ledger")
	csrFile := fs.String("csr", "", "the CSR (PEM) to sign (default: standard input)")
	csrDir := fs.String("csr-dir", "", "sign every *.csr file in this directory (needs --out DIR)")
	out := fs.String("out", "", "with --csr: the chain file (default: standard output); with --csr-dir: the directory the chains go to")
	jobs := fs.Int("jobs", 32*runtime.GOMAXPROCS(0), "with --csr-dir: CSRs issued at once (the ledger syncs many at once)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *benchFile == "":
		return fmt.Errorf("%w: --bench FILE is required", errUsage)
	case *csrFile != "" && *csrDir != "":
		return fmt.Errorf("%w: give at most one of --csr FILE and --csr-dir DIR", errUsage)
	case *csrDir != "" && *out == "":
		return fmt.Errorf("%w: --csr-dir needs --out DIR, the directory the chains go to", errUsage)
	case *csrDir == "" && *csrFile == "" && *out != "":
		return fmt.Errorf("%w: --out FILE goes with --csr FILE (a CSR on standard input is answered on standard output)", errUsage)
	case *jobs < 1:
		return fmt.Errorf("%w: --jobs must be at least 1", errUsage)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	if *csrDir != "" {
		return signDir(ctx, b, *csrDir, *out, *jobs, stdout, stderr)
	}
	return signOne(ctx, b, *csrFile, *out, stdout, stderr)
}

// signOne signs one CSR, from a file or standard input. The CSR is read and checked against
// the profile before the DAK is opened, so a broken pipe costs no PIN verification; nothing
// reaches stdout or the output file unless the whole chain does.
func signOne(ctx context.Context, b *bench.Bench, csrFile, out string, stdout, stderr io.Writer) error {
	name, src := "stdin", "standard input"
	var data []byte
	var err error
	if csrFile == "" {
		if f, ok := signStdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return fmt.Errorf("%w: no CSR: standard input is a terminal; pipe one in (cat device.csr | hil sign --bench FILE) or give --csr FILE", errUsage)
			}
		}
		data, err = readCSR(signStdin, src)
	} else {
		name, src = csrName(csrFile), csrFile
		data, err = readCSRFile(csrFile)
	}
	if err != nil {
		return err
	}
	if err := precheckCSR(b, data, src); err != nil {
		return err
	}
	var pf *pendingFile
	if out != "" {
		sweepStale(filepath.Dir(out), time.Now(), stderr)
		// Made before anything is signed: an output that cannot be written costs no signature.
		if pf, err = createPending(out); err != nil {
			return fmt.Errorf("output %s cannot be written (nothing was signed): %w", out, err)
		}
		defer pf.abort()
	}
	st, err := openSignStation(ctx, b, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	is, reused, err := st.issue(ctx, name, data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if reused {
		fmt.Fprintf(stderr, "hil sign: %s: the ledger already holds a chain for this key (certificate %s): the same chain, no new signature\n",
			src, pki.Fingerprint(is.Certificate))
	}
	if pf == nil {
		_, err := stdout.Write(is.ChainPEM)
		return err
	}
	if err := pf.write(is.ChainPEM, true); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := pf.commit(true); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}

// signJob is one CSR file of a batch and where its chain goes.
type signJob struct {
	name  string // the CSR file's name without .csr: the chain is <name>.pem
	path  string
	chain []byte            // the chain PEM issued (or recorded) for it
	leaf  *x509.Certificate // its device certificate
	out   *pendingFile
	err   error
}

// signDir signs every *.csr of dir into outDir with jobs goroutines calling the station's
// Issuer (the pipeline serialises the signatures themselves; checks, ledger and audit work
// overlap). The chains are written as hidden temporary files, made durable with one syncfs and
// renamed into place: a crash leaves no half-written chain, and every chain issued is in the
// ledger, so a rerun gets it back without a new signature.
func signDir(ctx context.Context, b *bench.Bench, dir, outDir string, jobs int, stdout, stderr io.Writer) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading the CSR directory: %w", err)
	}
	var list []*signJob
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".csr") && e.Name() != ".csr" {
			list = append(list, &signJob{name: strings.TrimSuffix(e.Name(), ".csr"), path: filepath.Join(dir, e.Name())})
		}
	}
	if len(list) == 0 {
		return fmt.Errorf("%s holds no *.csr files: nothing to sign", dir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("output directory %s cannot be made (nothing was signed): %w", outDir, err)
	}
	sweepStale(outDir, time.Now(), stderr)
	probe, err := createPending(filepath.Join(outDir, "probe"))
	if err != nil {
		return fmt.Errorf("output directory %s cannot be written (nothing was signed): %w", outDir, err)
	}
	probe.abort()
	st, err := openSignStation(ctx, b, stderr)
	if err != nil {
		return err
	}
	defer st.Close()

	var done, failed, reused atomic.Int64
	var errMu sync.Mutex
	fail := func(j *signJob, err error) {
		j.err = err
		failed.Add(1)
		errMu.Lock()
		fmt.Fprintf(stderr, "hil sign: %s: %v\n", j.path, err)
		errMu.Unlock()
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(signProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				errMu.Lock()
				fmt.Fprintf(stderr, "hil sign: %d/%d CSRs done, %d refused\n", done.Load(), len(list), failed.Load())
				errMu.Unlock()
			}
		}
	}()

	next := make(chan *signJob)
	var wg sync.WaitGroup
	for range min(jobs, len(list)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				signJobRun(ctx, st, j, &reused)
				if j.err != nil {
					fail(j, j.err)
				}
				done.Add(1)
			}
		}()
	}
feed:
	for _, j := range list {
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(stopProgress)
	<-progressDone

	stages := writeChains(outDir, list, fail)
	defer removeStaging(stages)
	var files []*pendingFile
	for _, j := range list {
		if j.out != nil {
			files = append(files, j.out)
		}
	}
	chains := len(files)
	var awsErr error
	if st.aws != nil && chains > 0 {
		var more []*pendingFile
		if more, awsErr = awsOutputs(st, outDir, list); awsErr == nil {
			files = append(files, more...)
		}
	}
	if err := commitBatch(outDir, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %d of %d CSRs into %s (%d chains from the ledger, issued before: no new signature), %d refused\n",
		chains, len(list), outDir, reused.Load(), failed.Load())
	if st.aws != nil && awsErr == nil && chains > 0 {
		fmt.Fprintf(stdout, "AWS IoT: %s (%d things), %s and %s for contract manufacturer %q's CA %q\n",
			awsBulkFile, chains, awsBulkTemplate, awsJITPTemplate, st.aws.ContractManufacturer, st.awsCA.Subject)
	}
	if awsErr != nil {
		return fmt.Errorf("the chains are written, the AWS IoT registration files are not: %w", awsErr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted after %d of %d CSRs: %w", done.Load(), len(list), ctx.Err())
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d CSRs refused (named above; nothing was written for them)", n, len(list))
	}
	return nil
}

// signJobRun issues one CSR of a batch and leaves its chain in a temporary file.
func signJobRun(ctx context.Context, st *signStation, j *signJob, reused *atomic.Int64) {
	data, err := readCSRFile(j.path)
	if err != nil {
		j.err = err
		return
	}
	is, wasReused, err := st.issue(ctx, j.name, data)
	if err != nil {
		j.err = err
		return
	}
	if wasReused {
		reused.Add(1)
	}
	j.chain, j.leaf = is.ChainPEM, is.Certificate
}

// writeChains writes each issued chain as a temporary file, to be renamed into outDir by
// commitBatch. It runs after the issuance, not inside it: creating files while the ledger syncs
// waits on the file system's journal. A chain whose file cannot be written is in the ledger: a
// rerun hands it out again. Each writer creates its files in a hidden directory of its own in
// outDir: creating a file holds its directory's lock while the file system allocates the inode,
// so writers sharing one directory queue (and spin) on it. It returns the staging directories,
// for removeStaging once the files are committed or aborted.
func writeChains(outDir string, list []*signJob, fail func(*signJob, error)) []string {
	next := make(chan *signJob)
	var wg sync.WaitGroup
	var stages []string
	for range min(signWriters, len(list)) {
		stage, err := os.MkdirTemp(outDir, ".hil-sign-*")
		if err != nil {
			stage = outDir // beside the final names, as a single writer would
		} else {
			stages = append(stages, stage)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				pf, err := createPendingIn(stage, filepath.Join(outDir, j.name+".pem"))
				if err == nil {
					if err = pf.write(j.chain, false); err != nil {
						pf.abort()
					}
				}
				if err != nil {
					j.leaf = nil
					fail(j, fmt.Errorf("issued and recorded in the ledger, but the chain file cannot be written (run hil sign again for it: no new signature): %w", err))
					continue
				}
				j.out = pf
			}
		}()
	}
	for _, j := range list {
		if j.chain != nil {
			next <- j
		}
	}
	close(next)
	wg.Wait()
	return stages
}

// removeStaging removes writeChains' staging directories (empty once their files were renamed
// or removed; one that is not is left for the operator to see).
func removeStaging(stages []string) {
	for _, d := range stages {
		os.Remove(d)
	}
}

// staleAfter is the age from which a temporary output is taken for the leftover of a hil sign
// that was stopped: a running one keeps its temporary files for seconds (a batch makes them
// after the issuance; one CSR makes its file just before its one signature).
const staleAfter = time.Hour

// sweepStale removes what a stopped hil sign left in dir, older than staleAfter at now: hidden
// staging directories (.hil-sign-*) and hidden temporary outputs (.NAME.hil-sign-*). Younger
// ones may be another hil sign's, at work in the same directory; other names are not touched.
func sweepStale(dir string, now time.Time, stderr io.Writer) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // a directory that cannot be read fails with its own error next
	}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		staging := e.IsDir() && strings.HasPrefix(name, ".hil-sign-")
		temporary := e.Type().IsRegular() && strings.HasPrefix(name, ".") && strings.Contains(name, ".hil-sign-")
		if !staging && !temporary {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < staleAfter {
			continue
		}
		if staging {
			err = os.RemoveAll(filepath.Join(dir, name))
		} else {
			err = os.Remove(filepath.Join(dir, name))
		}
		if err == nil {
			removed++
		}
	}
	if removed > 0 {
		fmt.Fprintf(stderr, "hil sign: removed %d temporary output(s) older than %s from %s, left by a hil sign that was stopped\n",
			removed, staleAfter, dir)
	}
}

// signWriters is how many chain files a batch creates at once.
const signWriters = 8

// The AWS IoT registration files a batch writes beside the chains.
const (
	awsBulkFile     = "aws-iot-bulk.jsonl"
	awsBulkTemplate = "aws-iot-bulk-template.json"
	awsJITPTemplate = "aws-iot-jitp-template.json"
)

// awsOutputs writes (not yet committed) the bulk registration input for the batch's
// certificates, in CSR file order, and the bulk and JITP provisioning templates.
func awsOutputs(st *signStation, outDir string, list []*signJob) ([]*pendingFile, error) {
	var leaves []*x509.Certificate
	for _, j := range list {
		if j.leaf != nil {
			leaves = append(leaves, j.leaf)
		}
	}
	bulk, err := awsiot.BulkFile(leaves, st.awsCA)
	if err != nil {
		return nil, err
	}
	bulkTmpl, err := st.aws.BulkTemplate()
	if err != nil {
		return nil, err
	}
	jitp, err := st.aws.JITPTemplate()
	if err != nil {
		return nil, err
	}
	var out []*pendingFile
	for _, f := range []struct {
		name string
		data []byte
	}{{awsBulkFile, bulk}, {awsBulkTemplate, bulkTmpl}, {awsJITPTemplate, jitp}} {
		pf, err := createPending(filepath.Join(outDir, f.name))
		if err == nil {
			err = pf.write(f.data, false)
		}
		if err != nil {
			for _, o := range out {
				o.abort()
			}
			return nil, fmt.Errorf("writing %s: %w", f.name, err)
		}
		out = append(out, pf)
	}
	return out, nil
}

// commitBatch makes every written file durable with one syncfs of the output's file system (a
// thousand fsyncs would cost more than the signing), then renames each into place and syncs the
// directory. On failure the temporary files left are removed.
func commitBatch(outDir string, ready []*pendingFile) error {
	abortAll := func() {
		for _, pf := range ready {
			pf.abort()
		}
	}
	if len(ready) == 0 {
		return nil
	}
	d, err := os.Open(outDir)
	if err != nil {
		abortAll()
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		abortAll()
		return fmt.Errorf("syncing %s: %w", outDir, err)
	}
	for _, pf := range ready {
		if err := pf.commit(false); err != nil {
			abortAll()
			return fmt.Errorf("writing %s: %w", pf.path, err)
		}
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", outDir, err)
	}
	return nil
}

// signStation is the bench's signing set-up, and for an AWS IoT profile its [aws_iot] section and
// the contract manufacturer's CA the chains must lead to.
type signStation struct {
	*station.Station
	aws   *awsiot.Config
	awsCA *x509.Certificate
}

// awsConfig is the bench profile's [aws_iot] section; nil for other profiles.
func awsConfig(b *bench.Bench) (*awsiot.Config, error) {
	if b.Profile.DeviceConf == "" {
		return nil, nil
	}
	c, err := awsiot.LoadConfig(b.Profile.DeviceConf)
	if errors.Is(err, awsiot.ErrNoSection) {
		return nil, nil
	}
	return c, err
}

// openSignStation opens the bench's signing set-up (DAK, PIN guard, profile, ledger, audit log,
// or the agent) as provisioning does; warnings go to stderr, never to stdout, which carries the
// chain. With an AWS IoT profile the bench must sign with the contract manufacturer's CA.
func openSignStation(ctx context.Context, b *bench.Bench, stderr io.Writer) (*signStation, error) {
	aws, err := awsConfig(b)
	if err != nil {
		return nil, err
	}
	st, err := station.Open(ctx, b, time.Now())
	if err != nil {
		return nil, err
	}
	s := &signStation{Station: st, aws: aws}
	if aws != nil {
		candidates := st.Roots
		if st.Certs != nil {
			candidates = append([]*x509.Certificate{st.Certs.CA}, st.Roots...)
		}
		if s.awsCA, err = aws.RegisteredCA(candidates); err != nil {
			st.Close()
			return nil, err
		}
		if st.Certs != nil && s.awsCA != st.Certs.CA {
			st.Close()
			return nil, fmt.Errorf("the bench signs with %q, not with contract manufacturer %q's CA %q (the profile's [%s]): each manufacturer's line signs with its own CA",
				st.Certs.CA.Subject, aws.ContractManufacturer, s.awsCA.Subject, awsiot.Section)
		}
	}
	st.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "hil sign: "+format+"\n", args...) }
	if st.Pipeline != nil {
		st.Pipeline.Logf = st.Logf
	}
	printProfileNotes(stderr, st.Profile)
	st.SetRun("sign-" + time.Now().UTC().Format("20060102T150405.000Z"))
	return s, nil
}

// precheckCSR checks a single CSR against the bench's profile before the DAK is opened.
func precheckCSR(b *bench.Bench, data []byte, src string) error {
	if b.Profile.DeviceConf == "" {
		return nil // an agent checks with its own profile
	}
	p, err := station.LoadProfile(b)
	if err != nil {
		return err
	}
	csr, err := p.CheckCSR(data)
	if err != nil {
		return fmt.Errorf("%s: %w (nothing was signed)", src, err)
	}
	aws, err := awsConfig(b)
	if err != nil {
		return err
	}
	if aws != nil && !awsiotThingName(csr.Subject.CommonName) {
		return fmt.Errorf("%s: the CSR's CN %q is not an AWS IoT thing name (1-128 of letters, digits and :_-; the profile's [%s]): nothing was signed",
			src, csr.Subject.CommonName, awsiot.Section)
	}
	return nil
}

// issue runs one CSR through the station's Issuer: the ledger's chain for its key, or a new
// one. The ledger record stays issued: hil sign hands the chain out and no device tells it
// where the chain went. With an AWS IoT profile the CSR's CN must be a thing name, and it is the
// record's device id, so the ledger refuses a second key for one thing.
func (st *signStation) issue(ctx context.Context, name string, data []byte) (*pki.Issued, bool, error) {
	req := device.IssueRequest{Target: name, CSRPEM: data}
	if p := st.Pipeline; p != nil {
		// The pipeline's check parses the CSR; the device id comes from the CSR it checked.
		c, err := p.Check(req)
		if err != nil {
			return nil, false, err
		}
		if c.Req.DeviceID, err = st.deviceID(c.CSR); err != nil {
			return nil, false, err
		}
		return p.IssueChecked(ctx, c)
	}
	if csr := parseCSR(data); csr != nil {
		var err error
		if req.DeviceID, err = st.deviceID(csr); err != nil {
			return nil, false, err
		}
	}
	is, err := st.Issuer.Issue(ctx, req)
	return is, false, err
}

// deviceID is the record's device id for a CSR: with an AWS IoT profile its CN, which must be a
// thing name; otherwise the per-device field csrDeviceID finds.
func (st *signStation) deviceID(csr *x509.CertificateRequest) (string, error) {
	if st.aws == nil {
		return csrDeviceID(st.Profile, csr), nil
	}
	if !awsiotThingName(csr.Subject.CommonName) {
		return "", fmt.Errorf("the CSR's CN %q is not an AWS IoT thing name (1-128 of letters, digits and :_-; the profile's [%s]): nothing was signed",
			csr.Subject.CommonName, awsiot.Section)
	}
	return csr.Subject.CommonName, nil
}

// awsiotThingName says whether cn is an AWS IoT thing name.
func awsiotThingName(cn string) bool {
	_, err := awsiot.ThingName(&x509.Certificate{Subject: pkix.Name{CommonName: cn}})
	return err == nil
}

// parseCSR is the CSR in data, nil when it does not parse (the pipeline's check says why).
func parseCSR(data []byte) *x509.CertificateRequest {
	block := pemBlock(data)
	if block == nil {
		return nil
	}
	csr, err := x509.ParseCertificateRequest(block)
	if err != nil {
		return nil
	}
	return csr
}

// Subject attributes that identify a device (RFC 5280 / X.520).
var (
	oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// csrDeviceID is the device's own id when the CSR's subject carries one the profile marks as
// per-device: its serialNumber, else its CN (the AWS IoT thing name). A CSR carries no
// other id: with the FFS profile's fixed CN the record is keyed by the device key alone.
func csrDeviceID(p *pki.Profile, csr *x509.CertificateRequest) string {
	if p == nil || csr == nil {
		return ""
	}
	for _, oid := range []asn1.ObjectIdentifier{oidSerialNumber, oidCommonName} {
		if !slices.ContainsFunc(p.Subject, func(f pki.SubjectField) bool { return f.PerDevice && f.OID.Equal(oid) }) {
			continue
		}
		for _, a := range csr.Subject.Names {
			if a.Type.Equal(oid) {
				if s, ok := a.Value.(string); ok && s != "" {
					return s
				}
			}
		}
	}
	return ""
}

// pemBlock is the DER of the first CERTIFICATE REQUEST block, nil when there is none.
func pemBlock(data []byte) []byte {
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			return nil
		}
		if block.Type == "CERTIFICATE REQUEST" || block.Type == "NEW CERTIFICATE REQUEST" {
			return block.Bytes
		}
		data = rest
	}
}

// readCSRFile reads a CSR file, refusing one too large to be a CSR.
func readCSRFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading CSR: %w", err)
	}
	defer f.Close()
	return readCSR(f, path)
}

// readCSR reads one CSR from r: not empty, at most maxCSRBytes. What it holds is the profile's
// check (truncated, binary, wrong block).
func readCSR(r io.Reader, src string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCSRBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the CSR from %s: %w", src, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s is empty: no CSR to sign", src)
	}
	if len(data) > maxCSRBytes {
		return nil, fmt.Errorf("%s holds more than %d KiB: not a CSR (a P-256 CSR is under 1 KiB)", src, maxCSRBytes>>10)
	}
	return data, nil
}

// csrName is a CSR file's name without its extension.
func csrName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// pendingFile is an output being written: a hidden temporary file beside its final path.
// Creating it first proves the directory writable before anything is signed; commit renames it
// into place, so a reader never sees half a chain.
type pendingFile struct {
	f    *os.File
	tmp  string
	path string
}

func createPending(path string) (*pendingFile, error) {
	return createPendingIn(filepath.Dir(path), path)
}

// createPendingIn is createPending with the temporary file in dir (on path's file system).
func createPendingIn(dir, path string) (*pendingFile, error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".hil-sign-*")
	if err != nil {
		return nil, err
	}
	return &pendingFile{f: f, tmp: f.Name(), path: path}, nil
}

// write writes data and closes the file; with sync the data is on disk first.
func (p *pendingFile) write(data []byte, sync bool) error {
	_, err := p.f.Write(data)
	if err == nil && sync {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	return err
}

// commit renames the written file into place; with sync its directory is synced after (a
// batch syncs the directory once).
func (p *pendingFile) commit(sync bool) error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return err
	}
	p.tmp = ""
	if sync {
		d, err := os.Open(filepath.Dir(p.path))
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	return nil
}

// abort removes the temporary file (nothing when it was committed).
func (p *pendingFile) abort() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	if p.tmp != "" {
		os.Remove(p.tmp)
		p.tmp = ""
	}
}

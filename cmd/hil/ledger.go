package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"hilbench/harness/atomicfile"
	"hilbench/harness/bench"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
	"hilbench/harness/signer/budget"
	"hilbench/harness/station"
)

const ledgerUsage = `hil ledger: the record of every device identity this bench's DAK issued

  hil ledger list --bench FILE [--state S] [--target T] [--device ID] [--live]
                                     one line per certificate (or reservation)
  hil ledger show --bench FILE (ID | --serial HEX | --fingerprint SHA256 | --device ID)
                                     one record in full, with its chain
  hil ledger export --bench FILE [--format jsonl|csv] [--out FILE]
                                     every certificate ever issued, one JSON object (or CSV row) each
  hil ledger check --bench FILE      prove the ledger consistent: budget used = signatures recorded,
                                     every issued record has its chain, no device has two live records,
                                     and the audit log holds no certificate the ledger does not;
                                     exit status 1 otherwise
  hil ledger import --bench FILE [--audit FILE] [--budget FILE] [--records DIR]
                                     bring an earlier release's audit log, budget counter and
                                     devices/<target>/record.json files into the ledger

The ledger is the bench's ledger: setting (default <output>/ledger.db, SQLite).
`

var ledgerCommands = []string{"list", "show", "export", "check", "import"}

// ledgerSynopsis is each ledger command's usage after "hil ledger COMMAND".
var ledgerSynopsis = map[string]string{
	"list":   "--bench FILE [--state S] [--target T] [--device ID] [--live]\n\nOne line per certificate (or reservation).",
	"show":   "--bench FILE (ID | --serial HEX | --fingerprint SHA256 | --device ID)\n\nOne record in full, with its chain.",
	"export": "--bench FILE [--format jsonl|csv] [--out FILE]\n\nEvery certificate ever issued, one JSON object (or CSV row) each.",
	"check":  "--bench FILE\n\nProve the ledger consistent (budget, chains, live records, audit log); exit status 1 otherwise.",
	"import": "--bench FILE [--audit FILE] [--budget FILE] [--records DIR]\n\nBring an earlier release's audit log, budget counter and record files into the ledger.",
}

func cmdLedger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, rest, err := subcommand("ledger", args, ledgerCommands, ledgerUsage, stdout, stderr)
	if err != nil {
		return err
	}
	args = append([]string{sub}, rest...)
	fs := newFlags("ledger "+sub, ledgerSynopsis[sub], stdout)
	benchFile := fs.String("bench", "", "bench file (YAML)")
	var run func(ctx context.Context, b *bench.Bench, lg ledger.Store) error
	switch sub {
	case "list":
		state := fs.String("state", "", "only records in this state (reserved, issued, stored, verified, replaced)")
		target := fs.String("target", "", "only records of this bench slot")
		dev := fs.String("device", "", "only records of this device (serial/DSN or device key)")
		live := fs.Bool("live", false, "only live records (not replaced)")
		run = func(ctx context.Context, b *bench.Bench, lg ledger.Store) error {
			f := ledger.Filter{State: ledger.State(*state), Target: *target, LiveOnly: *live}
			if *state != "" && !ledger.State(*state).Live() && ledger.State(*state) != ledger.Replaced {
				return fmt.Errorf("%w: --state %q: want reserved, issued, stored, verified or replaced", errUsage, *state)
			}
			recs, err := listDevice(ctx, lg, f, *dev)
			if err != nil {
				return err
			}
			return writeLedgerTable(stdout, recs)
		}
	case "show":
		serial := fs.String("serial", "", "the certificate serial (hex, as openssl x509 -serial prints it)")
		fp := fs.String("fingerprint", "", "the certificate's SHA-256 (hex)")
		dev := fs.String("device", "", "the device's live record (serial/DSN or device key)")
		run = func(ctx context.Context, b *bench.Bench, lg ledger.Store) error {
			rec, err := showRecord(ctx, lg, fs.Args(), *serial, *fp, *dev)
			if err != nil {
				return err
			}
			shown := struct {
				*ledger.Record
				// What labels and control logs need, from the leaf.
				BarcodePublicKey    string `json:"barcode_public_key,omitempty"`
				ControlLogPublicKey string `json:"control_log_public_key,omitempty"`
			}{Record: rec}
			if chain, err := pki.ParseChainPEM([]byte(rec.ChainPEM)); err == nil && len(chain) > 0 {
				shown.BarcodePublicKey, _ = pki.CompressedPublicKey(chain[0].PublicKey)
				shown.ControlLogPublicKey = pki.ControlLogPublicKey(chain[0])
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(shown)
		}
	case "export":
		format := fs.String("format", "jsonl", "jsonl or csv")
		out := fs.String("out", "", "write to this file (atomically) instead of standard output")
		run = func(ctx context.Context, b *bench.Bench, lg ledger.Store) error {
			if *format != "jsonl" && *format != "csv" {
				return fmt.Errorf("%w: --format %q: want jsonl or csv", errUsage, *format)
			}
			recs, err := lg.List(ctx, ledger.Filter{})
			if err != nil {
				return err
			}
			write := func(w io.Writer) error {
				if *format == "csv" {
					return ledger.WriteCSV(w, recs)
				}
				return ledger.WriteJSONL(w, recs)
			}
			if *out == "" {
				return write(stdout)
			}
			var sb strings.Builder
			if err := write(&sb); err != nil {
				return err
			}
			if err := atomicfile.Write(*out, []byte(sb.String()), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "%d records written to %s\n", len(recs), *out)
			return nil
		}
	case "check":
		run = func(ctx context.Context, b *bench.Bench, lg ledger.Store) error {
			return checkLedger(ctx, b, lg, stdout)
		}
	case "import":
		auditFile := fs.String("audit", "", "an audit log (audit.jsonl) of an earlier release (default: the bench's, if present)")
		budgetFile := fs.String("budget", "", "a signature counter file of an earlier release (default: the bench's, if present)")
		records := fs.String("records", "", "a devices/ directory of record.json files (default: <output>/devices, if present)")
		run = func(ctx context.Context, b *bench.Bench, lg ledger.Store) error {
			return importLedger(ctx, b, lg, *auditFile, *budgetFile, *records, stdout)
		}
	default:
		fmt.Fprint(stderr, ledgerUsage)
		return fmt.Errorf("%w: unknown ledger command %q (commands: %s)", errUsage, sub, strings.Join(ledgerCommands, ", "))
	}
	if sub == "show" {
		if err := parseFlagsArgs(fs, args[1:]); err != nil {
			return err
		}
	} else if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *benchFile == "" {
		return fmt.Errorf("%w: --bench FILE is required", errUsage)
	}
	b, err := bench.Load(*benchFile)
	if err != nil {
		return err
	}
	lg, err := ledger.Open(ctx, b.Ledger, b.Output)
	if err != nil {
		return err
	}
	defer lg.Close()
	return run(ctx, b, lg)
}

// listDevice lists records, those of one device when dev is given (its serial/DSN or key).
func listDevice(ctx context.Context, lg ledger.Store, f ledger.Filter, dev string) ([]ledger.Record, error) {
	if dev == "" {
		return lg.List(ctx, f)
	}
	f.DeviceID = dev
	recs, err := lg.List(ctx, f)
	if err != nil || len(recs) > 0 {
		return recs, err
	}
	f.DeviceID, f.DeviceKey = "", dev
	return lg.List(ctx, f)
}

func showRecord(ctx context.Context, lg ledger.Store, args []string, serial, fp, dev string) (*ledger.Record, error) {
	given := 0
	for _, s := range []string{serial, fp, dev} {
		if s != "" {
			given++
		}
	}
	if len(args) > 1 || given+len(args) != 1 {
		return nil, fmt.Errorf("%w: give one of ID, --serial, --fingerprint, --device", errUsage)
	}
	if len(args) == 1 {
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: record id %q is not a number", errUsage, args[0])
		}
		return lg.Get(ctx, id)
	}
	if dev != "" {
		recs, err := listDevice(ctx, lg, ledger.Filter{LiveOnly: true}, dev)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("device %s: %w (no live record)", dev, ledger.ErrNotFound)
		}
		return &recs[len(recs)-1], nil
	}
	recs, err := lg.List(ctx, ledger.Filter{})
	if err != nil {
		return nil, err
	}
	for i := range recs {
		r := &recs[i]
		if (serial != "" && strings.EqualFold(r.Serial, serial)) || (fp != "" && strings.EqualFold(r.CertSHA256, fp)) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("certificate %s%s: %w", serial, fp, ledger.ErrNotFound)
}

func writeLedgerTable(w io.Writer, recs []ledger.Record) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tTARGET\tDEVICE\tSERIAL\tSHA-256\tRESERVED")
	for _, r := range recs {
		devName := r.DeviceID
		if devName == "" {
			devName = short(r.DeviceKey, 16)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.State, r.Target, devName, short(r.Serial, 16), short(r.CertSHA256, 16),
			r.ReservedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d record(s)\n", len(recs))
	return nil
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// checkLedger runs the store's consistency check and compares the ledger with the audit log:
// every certificate the audit log records must be in the ledger, and each DAK's count must
// cover the audit log's.
func checkLedger(ctx context.Context, b *bench.Bench, lg ledger.Store, stdout io.Writer) error {
	problems, err := lg.Check(ctx)
	if err != nil {
		return err
	}
	recs, err := lg.List(ctx, ledger.Filter{})
	if err != nil {
		return err
	}
	auditPath := filepath.Join(station.StateDir(b), "audit.jsonl")
	undelivered, unaudited := 0, 0
	if _, err := os.Stat(auditPath); err == nil {
		log, err := audit.Open(auditPath)
		if err != nil {
			return err
		}
		defer log.Close()
		held := map[string]bool{}
		// spare: signatures a device key's records count beyond the certificates they hold; a
		// station that died between the audit log and the ledger signed once more than it delivered.
		spare := map[string]int{}
		for _, r := range recs {
			spare[r.DeviceKey] += r.Signatures
			if r.CertSHA256 != "" {
				held[r.CertSHA256] = true
				spare[r.DeviceKey]--
			}
		}
		arecs, err := log.Records()
		if err != nil {
			return err
		}
		unaudited = issuedNotAudited(b, recs, arecs)
		for _, a := range arecs {
			if held[a.CertSHA256] {
				continue
			}
			if r, err := recordFromChain(a.ChainPEM, ledger.Issued); err == nil && spare[r.DeviceKey] > 0 {
				spare[r.DeviceKey]--
				undelivered++
				continue
			}
			problems = append(problems, ledger.Problem{Kind: "audit_not_in_ledger",
				Detail: fmt.Sprintf("the audit log %s records certificate %s (serial %s, target %s) that the ledger neither holds nor counts", auditPath, a.CertSHA256, a.Serial, a.Target)})
		}
	}
	states := map[ledger.State]int{}
	for _, r := range recs {
		states[r.State]++
	}
	fmt.Fprintf(stdout, "ledger %s: %d record(s): %d verified, %d stored, %d issued, %d reserved, %d replaced\n", lg.Describe(), len(recs),
		states[ledger.Verified], states[ledger.Stored], states[ledger.Issued], states[ledger.Reserved], states[ledger.Replaced])
	if undelivered > 0 {
		fmt.Fprintf(stdout, "%d certificate(s) in the audit log were signed but never delivered (a station stopped between signing and "+
			"recording; their devices were signed again under the same record, and the budget counts both)\n", undelivered)
	}
	if unaudited > 0 {
		fmt.Fprintf(stdout, "%d issued record(s) of this station that the audit log does not hold yet: a station stopped between "+
			"recording an in-process signature in the ledger and the audit log; those chains never left, and the next request "+
			"for each key appends its chain to the audit log before handing it out\n", unaudited)
	}
	if len(problems) == 0 {
		fmt.Fprintln(stdout, "consistent: budget used = signatures recorded, every issued record has its chain, no device has two live records")
		return nil
	}
	for _, p := range problems {
		if p.RecordID != 0 {
			fmt.Fprintf(stdout, "PROBLEM %s (record %d): %s\n", p.Kind, p.RecordID, p.Detail)
		} else {
			fmt.Fprintf(stdout, "PROBLEM %s: %s\n", p.Kind, p.Detail)
		}
	}
	return fmt.Errorf("ledger %s: %d problem(s)", lg.Describe(), len(problems))
}

// issuedNotAudited counts this station's issued records of the bench's DAK whose certificate the
// audit log lacks. An in-process DAK records a signature in the ledger before the audit log, so a
// station stopped between the two leaves such a record; its chain has not left (a chain is
// appended to the audit log before it is handed out), so it is reported, not a problem.
func issuedNotAudited(b *bench.Bench, recs []ledger.Record, arecs []audit.Record) int {
	dak, err := dakCertificate(b)
	if err != nil {
		return 0 // an agent's bench: the agent keeps the audit log
	}
	dakSHA := audit.SHA256Hex(dak.Raw)
	inLog := make(map[string]bool, len(arecs))
	for _, a := range arecs {
		inLog[a.CertSHA256] = true
	}
	here, n := station.StationID(), 0
	for _, r := range recs {
		if r.State == ledger.Issued && r.CertSHA256 != "" && r.DAKSHA256 == dakSHA && r.Station == here && !inLog[r.CertSHA256] {
			n++
		}
	}
	return n
}

// importLedger brings an earlier release's evidence into the ledger: audit log records become
// issued records, record.json files mark theirs verified when complete, and a budget counter
// ahead of the records raises the DAK's count.
func importLedger(ctx context.Context, b *bench.Bench, lg ledger.Store, auditPath, budgetPath, recordsDir string, stdout io.Writer) error {
	stateDir := station.StateDir(b)
	explicit := auditPath != "" || budgetPath != "" || recordsDir != ""
	if auditPath == "" && !explicit {
		auditPath = existing(filepath.Join(stateDir, "audit.jsonl"))
	}
	if budgetPath == "" && !explicit {
		budgetPath = existing(filepath.Join(stateDir, "budget"))
	}
	if recordsDir == "" && !explicit {
		recordsDir = existing(filepath.Join(b.Output, "devices"))
	}
	if auditPath == "" && budgetPath == "" && recordsDir == "" {
		return fmt.Errorf("nothing to import: no audit log, budget counter or devices/ directory under %s", b.Output)
	}
	var imported, skipped int
	add := func(r ledger.Record) error {
		ok, err := lg.Import(ctx, r)
		if err != nil {
			return err
		}
		if ok {
			imported++
		} else {
			skipped++
		}
		return nil
	}
	if auditPath != "" {
		log, err := audit.Open(auditPath)
		if err != nil {
			return err
		}
		recs, err := log.Records()
		log.Close()
		if err != nil {
			return err
		}
		for _, a := range recs {
			r, err := recordFromChain(a.ChainPEM, ledger.Issued)
			if err != nil {
				return fmt.Errorf("audit log %s, certificate %s: %w", auditPath, a.Serial, err)
			}
			r.Target, r.CSRSHA256, r.DAKSHA256, r.Station = a.Target, a.CSRSHA256, a.DAKSHA256, "import"
			r.ReservedAt, r.IssuedAt = a.Time, a.Time
			if err := add(r); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "audit log %s: %d certificate(s)\n", auditPath, len(recs))
	}
	if recordsDir != "" {
		n, err := importRecordFiles(ctx, lg, recordsDir, add)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "record files under %s: %d\n", recordsDir, n)
	}
	if budgetPath != "" {
		if err := importBudget(ctx, b, lg, budgetPath, stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "imported %d record(s), %d already in the ledger %s\n", imported, skipped, lg.Describe())
	return nil
}

func existing(path string) string {
	if _, err := os.Stat(path); err == nil {
		return path
	}
	return ""
}

// recordFromChain makes a ledger record from a chain PEM (leaf first, then the DAK).
func recordFromChain(chainPEM string, state ledger.State) (ledger.Record, error) {
	chain, err := pki.ParseChainPEM([]byte(chainPEM))
	if err != nil {
		return ledger.Record{}, err
	}
	if len(chain) < 2 {
		return ledger.Record{}, fmt.Errorf("chain has %d certificate(s), want the device's and the DAK's", len(chain))
	}
	leaf := chain[0]
	key, err := ledger.KeyHash(leaf.PublicKey)
	if err != nil {
		return ledger.Record{}, err
	}
	return ledger.Record{
		DeviceKey: key, DAKSHA256: audit.SHA256Hex(chain[1].Raw), State: state, Signatures: 1,
		Serial: audit.SerialHex(leaf), CertSHA256: pki.Fingerprint(leaf), Subject: leaf.Subject.String(),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, ChainPEM: chainPEM,
	}, nil
}

// importRecordFiles reads devices/<target>/record.json and chain.pem files. A complete record
// is a verified identity; its audit-log twin (same certificate) is moved to verified.
func importRecordFiles(ctx context.Context, lg ledger.Store, dir string, add func(ledger.Record) error) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "record.json"))
		if err != nil {
			continue
		}
		var old struct {
			Target   string    `json:"target"`
			Complete bool      `json:"complete"`
			Issued   time.Time `json:"issued"`
		}
		if err := json.Unmarshal(data, &old); err != nil {
			return n, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name(), "record.json"), err)
		}
		chain, err := os.ReadFile(filepath.Join(dir, e.Name(), "chain.pem"))
		if err != nil {
			return n, err
		}
		state := ledger.Issued
		if old.Complete {
			state = ledger.Verified
		}
		r, err := recordFromChain(string(chain), state)
		if err != nil {
			return n, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name(), "chain.pem"), err)
		}
		r.Target, r.Station, r.ReservedAt, r.IssuedAt = old.Target, "import", old.Issued, old.Issued
		if old.Complete {
			r.StoredAt, r.VerifiedAt = old.Issued, old.Issued
		}
		if err := add(r); err != nil {
			return n, err
		}
		if old.Complete {
			// The audit log imported it as issued: the record file says it got further.
			if live, err := lg.Live(ctx, r.DeviceKey); err == nil && live.CertSHA256 == r.CertSHA256 {
				if err := lg.Advance(ctx, live.ID, ledger.Verified); err != nil {
					return n, err
				}
			}
		}
		n++
	}
	return n, nil
}

// importBudget raises the DAK's count to an earlier counter file's, which may count signatures
// that left no record (a crash between the count and the audit log).
func importBudget(ctx context.Context, b *bench.Bench, lg ledger.Store, path string, stdout io.Writer) error {
	dak, err := dakCertificate(b)
	if err != nil {
		return fmt.Errorf("importing the budget counter %s: %w", path, err)
	}
	bud, err := budget.Open(path, dak, 0)
	if err != nil {
		return err
	}
	used := bud.Used()
	bud.Close()
	if err := lg.SetBudgetFloor(ctx, audit.SHA256Hex(dak.Raw), used); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "budget counter %s: %d signature(s) counted\n", path, used)
	return nil
}

// dakCertificate is the bench's DAK certificate, read from its file (no key, no PIN needed).
func dakCertificate(b *bench.Bench) (*x509.Certificate, error) {
	if b.Signer.Certificate == "" {
		return nil, errors.New("the bench names no signer.certificate; import the budget counter with a bench whose signer has one")
	}
	data, err := os.ReadFile(b.Signer.Certificate)
	if err != nil {
		return nil, err
	}
	chain, err := pki.ParseChainPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Signer.Certificate, err)
	}
	return chain[0], nil
}

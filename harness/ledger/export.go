package ledger

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Exported is a record as WriteJSONL writes it: every Record field, and device, the name an
// operator knows the device by (its device id when it reported one, else its device key).
type Exported struct {
	Device string `json:"device"`
	Record
}

// Export returns the record as exported.
func Export(r Record) Exported {
	d := r.DeviceID
	if d == "" {
		d = r.DeviceKey
	}
	return Exported{Device: d, Record: r}
}

// WriteJSONL writes one JSON object per record, one per line: the Record's JSON fields
// (serial, fingerprint, state, target, chain_pem, timestamps in RFC 3339 UTC, ...) and device.
func WriteJSONL(w io.Writer, recs []Record) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range recs {
		if err := enc.Encode(Export(r)); err != nil {
			return fmt.Errorf("ledger export: %w", err)
		}
	}
	return nil
}

// CSVHeader is the header row WriteCSV writes. The chain PEM is left out (it spans lines); the
// fingerprint finds it in the ledger or the JSONL export.
var CSVHeader = []string{"id", "device", "device_key", "device_id", "target", "station", "run_id", "dak_sha256",
	"csr_sha256", "state", "signatures", "serial", "fingerprint", "subject", "not_before", "not_after",
	"reserved_at", "issued_at", "stored_at", "verified_at", "replaced_at", "replaced_by"}

// WriteCSV writes a header row (CSVHeader) and one row per record. Times are RFC 3339 in UTC,
// empty when unset; replaced_by is empty when the record was not replaced.
func WriteCSV(w io.Writer, recs []Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("ledger export: %w", err)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, r := range recs {
		by := ""
		if r.ReplacedBy != 0 {
			by = strconv.FormatInt(r.ReplacedBy, 10)
		}
		row := []string{strconv.FormatInt(r.ID, 10), Export(r).Device, r.DeviceKey, r.DeviceID, r.Target, r.Station,
			r.RunID, r.DAKSHA256, r.CSRSHA256, string(r.State), strconv.Itoa(r.Signatures), r.Serial, r.CertSHA256,
			r.Subject, ts(r.NotBefore), ts(r.NotAfter), ts(r.ReservedAt), ts(r.IssuedAt), ts(r.StoredAt),
			ts(r.VerifiedAt), ts(r.ReplacedAt), by}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("ledger export: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("ledger export: %w", err)
	}
	return nil
}

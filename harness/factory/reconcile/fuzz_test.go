package reconcile

import (
	"errors"
	"strings"
	"testing"
)

// FuzzReadCSV: any bytes as a serials CSV either give rows, each an SMSN of 64 upper-case hex
// digits on a line after the one before, or an ErrCSV naming the file (and, past the start of
// the file, a line).
func FuzzReadCSV(f *testing.F) {
	smsn := strings.Repeat("0A", 32)
	for _, s := range []string{
		smsn + "\n" + strings.ToLower(smsn) + "\n",
		"smsn,dsn,device_type,apid,stage\n" + smsn + ",SN1,A17XHX23H06INH,pd25,production\n",
		"smsn\n\"" + smsn + "\"\n# comment\n\n" + smsn + "\n",
		"smsn,apid\n" + smsn + "\n",
		"\"unclosed\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := ReadCSV(strings.NewReader(in), "serials.csv")
		if err != nil {
			if !errors.Is(err, ErrCSV) || !strings.Contains(err.Error(), "serials.csv") {
				t.Fatalf("error %v: want ErrCSV naming the file", err)
			}
			return
		}
		if len(rows) == 0 {
			t.Fatal("no rows and no error")
		}
		last := 0
		for _, r := range rows {
			if len(r.SMSN) != 64 || strings.ToUpper(r.SMSN) != r.SMSN || !isSMSN(r.SMSN) {
				t.Fatalf("row on line %d: SMSN %q", r.Line, r.SMSN)
			}
			if r.Line <= last {
				t.Fatalf("row on line %d after line %d", r.Line, last)
			}
			last = r.Line
		}
	})
}

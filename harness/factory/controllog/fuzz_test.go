package controllog

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRead: any bytes as a control log read back (by hil reconcile) either fail naming the file
// or give its entries; with a SHA-256 file written for exactly those bytes the sum matches, and
// with one for other bytes it does not.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"controlLogs":[{"version":"4-0-1","device":{"serialNumber":"AB","productIdentifier":{"advertisedProductId":"pd25"},"sidewalkData":{"sidewalkP256R1CertificateChain":"AA==","label":"test"}}}]}`), true, true)
	f.Add([]byte(`{"controlLogs":[{"device":{"serialNumber":"DSN1","productIdentifier":{"deviceTypeId":"X"}},"dhaData":{"publicKey":"k","certificateSha256":"s"}}]}`), false, false)
	f.Add([]byte(`{"controlLogs":null}`), true, true)
	f.Add([]byte("not json"), true, false)
	f.Fuzz(func(t *testing.T, data []byte, sidewalk, rightSum bool) {
		format, name := FormatFFS, "FFS_CONTROL_LOG_20261206080000.json"
		if sidewalk {
			format, name = FormatSidewalk, "C_CONTROL_LOG_20261206080000.txt"
		}
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		summed := data
		if !rightSum {
			summed = append([]byte("x"), data...)
		}
		sum := sha256.Sum256(summed)
		os.WriteFile(path+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o644)
		got, err := Read(format, path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		if got.SumOK != rightSum {
			t.Fatalf("SumOK %v with a SHA-256 file for %s bytes (%s)", got.SumOK, map[bool]string{true: "the same", false: "other"}[rightSum], got.SumProblem)
		}
		for i, s := range got.Serials {
			if s.Index != i {
				t.Fatalf("entry %d has index %d", i, s.Index)
			}
		}
	})
}

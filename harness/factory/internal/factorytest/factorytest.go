// Package factorytest makes ledger records for the factory outputs' tests: a SQLite ledger with
// verified P-256 identities signed by a throwaway DAK, as the issuance pipeline leaves them.
package factorytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"hilbench/harness/ledger"
)

// Ledger is a test ledger and the DAK that signed its records.
type Ledger struct {
	*ledger.SQLiteStore
	Path    string
	dakKey  *ecdsa.PrivateKey
	dakCert *x509.Certificate
	dakSum  string
}

// New opens a SQLite ledger in a temporary directory.
func New(t testing.TB) *Ledger {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test DAK", Organization: []string{"hilbench tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	sum := sha256.Sum256(der)
	return &Ledger{SQLiteStore: s, Path: path, dakKey: key, dakCert: cert, dakSum: hex.EncodeToString(sum[:])}
}

// Device is one identity Add recorded.
type Device struct {
	ID       string
	Key      *ecdsa.PrivateKey
	Record   *ledger.Record
	ChainPEM string
}

// Add records a verified identity for a new P-256 key with device id id ("" for none).
func (l *Ledger) Add(t testing.TB, id string) Device {
	t.Helper()
	return l.AddIn(t, id, ledger.Verified)
}

// AddIn records an identity for a new key and advances it to state (reserved, issued,
// stored, verified).
func (l *Ledger) AddIn(t testing.TB, id string, state ledger.State) Device {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := ledger.KeyHash(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := l.Reserve(ctx, ledger.Reservation{DeviceKey: dk, DeviceID: id, Target: "slot", Station: "test",
		RunID: "run", DAKSHA256: l.dakSum, CSRSHA256: dk, Holder: "factorytest"})
	if err != nil {
		t.Fatal(err)
	}
	d := Device{ID: id, Key: key, Record: rec}
	if state == ledger.Reserved {
		return d
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	cn := id
	if cn == "" {
		cn = "device"
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.dakCert, &key.PublicKey, l.dakKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	chain := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.dakCert.Raw}))
	sum := sha256.Sum256(der)
	if err := l.Issue(ctx, rec.ID, ledger.Certificate{Serial: leaf.SerialNumber.Text(16), CertSHA256: hex.EncodeToString(sum[:]),
		Subject: leaf.Subject.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, ChainPEM: chain}); err != nil {
		t.Fatal(err)
	}
	if state != ledger.Issued {
		if err := l.Advance(ctx, rec.ID, state); err != nil {
			t.Fatal(err)
		}
	}
	d.ChainPEM = chain
	if d.Record, err = l.Get(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	return d
}

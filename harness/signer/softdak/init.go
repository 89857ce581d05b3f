package softdak

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names InitDevelopment writes; the first three are the names the FFS provisioning guide
// uses, so the usual openssl commands work in the directory.
const (
	ConfigFile          = "dak.conf"
	KeyFile             = "dak_private_key.pem"
	CSRFile             = "dak.csr"
	CertificateFile     = "dak-certificate.pem"
	RootCertificateFile = "dev-root-ca.pem"
	RootKeyFile         = "dev-root-ca.key"
)

// Defaults for InitOptions.
const (
	DefaultCommonName     = "hilbench development DAK"
	DefaultOrganization   = "hilbench development"
	DefaultRootCommonName = "hilbench development root CA (NOT FOR PRODUCTION)"
	DefaultDAKDays        = 3650 // outlives the 1825-day device certificates it signs
	DefaultRootDays       = 7300
)

// InitOptions configures InitDevelopment. Zero values take the defaults.
type InitOptions struct {
	// DAK subject, written to dak.conf's [dn] section.
	CommonName         string // default DefaultCommonName
	Organization       string // default DefaultOrganization
	OrganizationalUnit string // optional
	Country            string // optional, two letters

	RootCommonName string // default DefaultRootCommonName
	DAKDays        int    // DAK certificate validity; default DefaultDAKDays
	RootDays       int    // root validity; default DefaultRootDays; must be >= DAKDays

	// Force replaces existing files instead of refusing.
	Force bool

	// Seams for tests.
	Now  func() time.Time // default time.Now
	Rand io.Reader        // serial numbers and signatures; default crypto/rand.Reader
}

// InitResult lists what InitDevelopment wrote.
type InitResult struct {
	Dir             string
	Config          string // dak.conf
	Key             string // dak_private_key.pem (0600)
	CSR             string // dak.csr
	Certificate     string // dak-certificate.pem
	RootCertificate string // dev-root-ca.pem
	RootKey         string // dev-root-ca.key (0600)
	// Written is every path above, in the order written.
	Written []string

	DAK  *x509.Certificate
	Root *x509.Certificate
}

// InitDevelopment makes a development DAK in dir the way the FFS provisioning guide describes
// (dak.conf, then an EC P-256 key and a CSR made from it) and, standing in
// for the AVS console, signs the CSR with a new local root CA. The result
// opens with Open(result.Key, result.Certificate) and verifies with
// `openssl verify -CAfile dev-root-ca.pem dak-certificate.pem`.
//
// It refuses to overwrite any of the six files unless opts.Force is set
// (*ExistsError, matching fs.ErrExist). dir is created (0700) if missing.
func InitDevelopment(dir string, opts InitOptions) (*InitResult, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("initialising development DAK in %s: %w", dir, err)
	}
	r := &InitResult{
		Dir:             dir,
		Config:          filepath.Join(dir, ConfigFile),
		Key:             filepath.Join(dir, KeyFile),
		CSR:             filepath.Join(dir, CSRFile),
		Certificate:     filepath.Join(dir, CertificateFile),
		RootCertificate: filepath.Join(dir, RootCertificateFile),
		RootKey:         filepath.Join(dir, RootKeyFile),
	}
	all := []string{r.RootKey, r.RootCertificate, r.Config, r.Key, r.CSR, r.Certificate}
	if !o.Force {
		var exist []string
		for _, p := range all {
			if _, err := os.Lstat(p); err == nil {
				exist = append(exist, filepath.Base(p))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("initialising development DAK: %w", err)
			}
		}
		if len(exist) > 0 {
			return nil, &ExistsError{Dir: dir, Paths: exist}
		}
	}

	// Make everything in memory first so a failure leaves no half set.
	files, err := o.generate(r)
	if err != nil {
		return nil, fmt.Errorf("initialising development DAK in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("initialising development DAK: %w", err)
	}
	for _, f := range files {
		if err := writeFile(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("initialising development DAK: %w (already written: %s)", err, strings.Join(r.Written, ", "))
		}
		r.Written = append(r.Written, f.path)
	}
	return r, nil
}

type outFile struct {
	path string
	data []byte
	mode fs.FileMode
}

func (o InitOptions) withDefaults() (InitOptions, error) {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&o.CommonName, DefaultCommonName)
	def(&o.Organization, DefaultOrganization)
	def(&o.RootCommonName, DefaultRootCommonName)
	if o.DAKDays == 0 {
		o.DAKDays = DefaultDAKDays
	}
	if o.RootDays == 0 {
		o.RootDays = DefaultRootDays
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.DAKDays < 0 || o.RootDays < 0 {
		return o, fmt.Errorf("validity days must be positive (DAK %d, root %d)", o.DAKDays, o.RootDays)
	}
	if o.DAKDays > o.RootDays {
		return o, fmt.Errorf("DAK validity (%d days) must not exceed the root's (%d days)", o.DAKDays, o.RootDays)
	}
	if o.Country != "" && len(o.Country) != 2 {
		return o, fmt.Errorf("country %q: want a two-letter code", o.Country)
	}
	for _, f := range []struct{ name, v string }{
		{"common name", o.CommonName}, {"organization", o.Organization},
		{"organizational unit", o.OrganizationalUnit}, {"country", o.Country},
		{"root common name", o.RootCommonName},
	} {
		if err := confValue(f.v); err != nil {
			return o, fmt.Errorf("%s %q: %w", f.name, f.v, err)
		}
	}
	return o, nil
}

// confValue refuses characters that OpenSSL's config parser would treat as
// syntax (comments, variables, escapes, quotes, line ends), so dak.conf
// means exactly the subject we sign.
func confValue(v string) error {
	if strings.TrimSpace(v) != v {
		return errors.New("leading or trailing space")
	}
	if i := strings.IndexAny(v, "#$\\\"'\r\n"); i >= 0 {
		return fmt.Errorf("character %q is not allowed in an OpenSSL config value", v[i])
	}
	return nil
}

func (o InitOptions) subject() pkix.Name {
	n := pkix.Name{CommonName: o.CommonName, Organization: []string{o.Organization}}
	if o.OrganizationalUnit != "" {
		n.OrganizationalUnit = []string{o.OrganizationalUnit}
	}
	if o.Country != "" {
		n.Country = []string{o.Country}
	}
	return n
}

// config renders dak.conf. The [dn] order is the order pkix.Name encodes
// (C, O, OU, CN), so `openssl req -config dak.conf` yields the same subject.
func (o InitOptions) config() []byte {
	var b strings.Builder
	b.WriteString(`# Development DAK request configuration, written by "hil dak init".
# Same shape as the dak.conf the AVS developer console hands out ("Provision AVS devices for FFS", Amazon):
#   openssl ecparam -name prime256v1 > dak-params.pem
#   openssl req -new -nodes -config dak.conf -newkey ec:dak-params.pem -keyout dak_private_key.pem -out dak.csr
# The certificate for this DAK is signed by dev-root-ca.pem, a local
# development root: devices provisioned with it are NOT accepted by Amazon.

[ req ]
default_bits = 256
prompt = no
encrypt_key = no
default_md = sha256
distinguished_name = dn

[ dn ]
`)
	if o.Country != "" {
		fmt.Fprintf(&b, "C = %s\n", o.Country)
	}
	fmt.Fprintf(&b, "O = %s\n", o.Organization)
	if o.OrganizationalUnit != "" {
		fmt.Fprintf(&b, "OU = %s\n", o.OrganizationalUnit)
	}
	fmt.Fprintf(&b, "CN = %s\n", o.CommonName)
	return []byte(b.String())
}

func (o InitOptions) generate(r *InitResult) ([]outFile, error) {
	now := o.Now()
	// Backdate a little so a bench whose clock lags the one that ran init
	// still accepts the certificates.
	notBefore := now.Add(-time.Hour).UTC()

	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), o.Rand)
	if err != nil {
		return nil, fmt.Errorf("generating root key: %w", err)
	}
	rootSerial, err := serial(o.Rand)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          rootSerial,
		Subject:               pkix.Name{CommonName: o.RootCommonName, Organization: []string{o.Organization}},
		NotBefore:             notBefore,
		NotAfter:              now.AddDate(0, 0, o.RootDays).UTC(),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	// crypto/x509 fills in the SubjectKeyId of CA certificates and copies
	// the parent's into AuthorityKeyId (RFC 5280 4.2.1.1, 4.2.1.2).
	root, err := createCert(o.Rand, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating root certificate: %w", err)
	}

	dakKey, err := ecdsa.GenerateKey(elliptic.P256(), o.Rand)
	if err != nil {
		return nil, fmt.Errorf("generating DAK key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(o.Rand, &x509.CertificateRequest{
		Subject:            o.subject(),
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, dakKey)
	if err != nil {
		return nil, fmt.Errorf("creating DAK CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parsing DAK CSR: %w", err)
	}
	dakSerial, err := serial(o.Rand)
	if err != nil {
		return nil, err
	}
	// Sign what the CSR says, as the console does with the uploaded dak.csr.
	dak, err := createCert(o.Rand, &x509.Certificate{
		SerialNumber:          dakSerial,
		Subject:               csr.Subject,
		NotBefore:             notBefore,
		NotAfter:              now.AddDate(0, 0, o.DAKDays).UTC(),
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // the DAK signs device certificates only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}, root, csr.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating DAK certificate: %w", err)
	}
	r.Root, r.DAK = root, dak

	rootKeyPEM, err := keyPEM(rootKey)
	if err != nil {
		return nil, fmt.Errorf("encoding root key: %w", err)
	}
	dakKeyPEM, err := keyPEM(dakKey)
	if err != nil {
		return nil, fmt.Errorf("encoding DAK key: %w", err)
	}
	return []outFile{
		{r.RootKey, rootKeyPEM, 0o600},
		{r.RootCertificate, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644},
		{r.Config, o.config(), 0o644},
		{r.Key, dakKeyPEM, 0o600},
		{r.CSR, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), 0o644},
		{r.Certificate, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dak.Raw}), 0o644},
	}, nil
}

func createCert(rnd io.Reader, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rnd, tmpl, parent, pub, priv)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// keyPEM encodes a key as PKCS#8 "PRIVATE KEY", as `openssl req -keyout`
// writes it.
func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// serial returns a random positive serial number of at most 16 octets
// (RFC 5280 4.1.2.2 allows 20).
func serial(rnd io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := io.ReadFull(rnd, b); err != nil {
			return nil, fmt.Errorf("generating serial number: %w", err)
		}
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}

// writeFile replaces path atomically: a reader sees the old file or the
// complete new one, and a key file never exists with a looser mode.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

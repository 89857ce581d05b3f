package softdak

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"hilbench/harness/signer"
)

// SoftDAK is a DAK whose private key lives in a PEM file.
type SoftDAK struct {
	key      *ecdsa.PrivateKey
	chain    []*x509.Certificate
	keyPath  string
	certPath string
}

var _ signer.Signer = (*SoftDAK)(nil)

// Opener opens SoftDAKs; its fields are seams for tests.
type Opener struct {
	// Now is the time the certificate's validity is checked against;
	// time.Now if nil.
	Now func() time.Time
}

// Open reads the DAK key and certificate (and optional intermediate
// certificate files) and checks them; see Opener.Open.
func Open(keyPath, certPath string, intermediates ...string) (*SoftDAK, error) {
	return Opener{}.Open(keyPath, certPath, intermediates...)
}

// Open reads keyPath (PKCS#8 or SEC 1, unencrypted, mode 0600 or stricter),
// certPath (the DAK certificate, optionally followed by intermediates) and
// each intermediates file, then refuses the DAK unless the certificate
// matches the key, is valid now and the chain links verify.
func (o Opener) Open(keyPath, certPath string, intermediates ...string) (*SoftDAK, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	chain, err := readCertificates(certPath)
	if err != nil {
		return nil, err
	}
	for _, p := range intermediates {
		certs, err := readCertificates(p)
		if err != nil {
			return nil, err
		}
		chain = append(chain, certs...)
	}
	d := &SoftDAK{key: key, chain: chain, keyPath: keyPath, certPath: certPath}
	if err := signer.CheckChain(d, now()); err != nil {
		return nil, fmt.Errorf("checking DAK %s with certificate %s: %w", keyPath, certPath, err)
	}
	return d, nil
}

// Public returns the DAK public key.
func (d *SoftDAK) Public() crypto.PublicKey { return d.key.Public() }

// Sign signs digest with the DAK key (ASN.1 ECDSA signature).
func (d *SoftDAK) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 && len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("softdak: digest is %d bytes, %v needs %d", len(digest), opts.HashFunc(), opts.HashFunc().Size())
	}
	return d.key.Sign(rand, digest, opts)
}

// InProcess reports that the key is in this process's memory: its signatures need no check
// after signing, and it signs concurrently (pki.InProcessSigner).
func (d *SoftDAK) InProcess() bool { return true }

// Chain returns a copy of the DAK certificate followed by intermediates.
func (d *SoftDAK) Chain() []*x509.Certificate {
	return append([]*x509.Certificate(nil), d.chain...)
}

// Certificate returns the DAK certificate.
func (d *SoftDAK) Certificate() *x509.Certificate { return d.chain[0] }

// Description names the key file and the certificate; it never shows key
// material.
func (d *SoftDAK) Description() string {
	c := d.chain[0]
	name := c.Subject.String()
	if c.Subject.CommonName != "" {
		name = "CN=" + c.Subject.CommonName
	}
	return fmt.Sprintf("softdak %s (%s, expires %s)", d.keyPath, name, c.NotAfter.UTC().Format("2006-01-02"))
}

// String and GoString keep fmt's %v, %+v and %#v from printing the private
// key's fields into a log.
func (d *SoftDAK) String() string   { return d.Description() }
func (d *SoftDAK) GoString() string { return "softdak.SoftDAK{" + d.Description() + "}" }

// readKey reads an unencrypted ECDSA private key from path after checking
// the file's permissions.
func readKey(path string) (*ecdsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading DAK key %s: %w", path, err)
	}
	// Windows has no Unix permission bits; os.Stat reports 0666 there.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, &PermissionError{Path: path, Mode: fi.Mode()}
	}
	if runtime.GOOS != "windows" {
		if err := checkKeyDirs(path); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading DAK key %s: %w", path, err)
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("reading DAK key %s: %w", path, err)
	}
	return key, nil
}

// parseKey finds the one private key in PEM data. Errors describe block
// types and parser complaints only, never block contents.
func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	var key any
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var k any
		var err error
		switch b.Type {
		case "EC PARAMETERS":
			// `openssl ecparam -name prime256v1` output, which the FFS provisioning guide
			// pipes into the same directory; the key carries its curve.
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w (PEM block %q): softdak reads only unencrypted keys as `openssl req -nodes` writes them; decrypt a copy with `openssl pkey -in KEY -out NEWKEY` and chmod 600 it, or use a YubiKey DAK", ErrEncryptedKey, b.Type)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			if _, enc := b.Headers["Proc-Type"]; enc {
				return nil, fmt.Errorf("%w (legacy PEM encryption, Proc-Type header): softdak reads only unencrypted keys; decrypt a copy with `openssl ec -in KEY -out NEWKEY` and chmod 600 it, or use a YubiKey DAK", ErrEncryptedKey)
			}
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "CERTIFICATE":
			// Harmless next to a key; the certificate is read from its own file.
			continue
		default:
			return nil, fmt.Errorf("unexpected PEM block %q; want \"PRIVATE KEY\" or \"EC PRIVATE KEY\"", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %q block: %w", b.Type, readable(err))
		}
		if key != nil {
			return nil, fmt.Errorf("more than one private key in the file")
		}
		key = k
	}
	if key == nil {
		return nil, fmt.Errorf("%w: no \"PRIVATE KEY\" or \"EC PRIVATE KEY\" PEM block", ErrNoKey)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w %T: a DAK is an EC key (openssl ecparam -name prime256v1)", ErrUnsupportedKey, key)
	}
	return ec, nil
}

// readable replaces encoding/asn1's errors, which print parser internals
// (struct tags, offsets) no reader can act on, with a short statement.
func readable(err error) error {
	var se asn1.StructuralError
	var sy asn1.SyntaxError
	if errors.As(err, &se) || errors.As(err, &sy) {
		return errors.New("malformed DER (the block is damaged or holds something else)")
	}
	return err
}

// readCertificates reads every CERTIFICATE block in path, in order.
func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading DAK certificate %s: %w", path, err)
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("reading DAK certificate %s: unexpected PEM block %q; want \"CERTIFICATE\"", path, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("reading DAK certificate %s: certificate %d: %w", path, len(certs), readable(err))
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("reading DAK certificate %s: %w (no \"CERTIFICATE\" PEM block)", path, ErrNoCertificate)
	}
	return certs, nil
}

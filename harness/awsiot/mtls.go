package awsiot

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// DefaultMTLSTimeout bounds the whole loopback handshake.
const DefaultMTLSTimeout = 10 * time.Second

// MTLSResult is what the server side of the check saw.
type MTLSResult struct {
	ThingName     string // the client certificate's CN
	CertificateID string // AWS IoT's id of the client certificate (SHA-256 of its DER)
	CA            string // subject of the registered CA the chain verified to
	Version       string // the TLS version negotiated
}

// CheckMTLS runs a TLS server on 127.0.0.1 that requires a client certificate chaining to
// registered (the contract manufacturer's CA, as AWS IoT Core does for a CA registered in the
// account) and connects to it presenting chain (device certificate first, then its CAs) with key.
// It fails, naming the side that refused, when the handshake does not complete, the key is not the
// leaf's, or the leaf's CN is not a thing name. timeout <= 0: DefaultMTLSTimeout.
func CheckMTLS(ctx context.Context, chain []*x509.Certificate, key crypto.Signer, registered *x509.Certificate, timeout time.Duration) (*MTLSResult, error) {
	if len(chain) == 0 {
		return nil, errors.New("mTLS check: no certificate chain")
	}
	if registered == nil {
		return nil, errors.New("mTLS check: no registered CA")
	}
	if _, err := ThingName(chain[0]); err != nil {
		return nil, fmt.Errorf("mTLS check: %w", err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("mTLS check: the device key is not the key of certificate %s", certID(chain[0]))
	}
	if timeout <= 0 {
		timeout = DefaultMTLSTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	serverCert, serverRoots, err := loopbackServerCert()
	if err != nil {
		return nil, err
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(registered)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mTLS check: listening on loopback: %w", err)
	}
	defer ln.Close()

	type seen struct {
		res *MTLSResult
		err error
	}
	served := make(chan seen, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- seen{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		srv := tls.Server(conn, &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientCAs,
			MinVersion:   tls.VersionTLS12,
		})
		if err := srv.HandshakeContext(ctx); err != nil {
			served <- seen{err: err}
			return
		}
		st := srv.ConnectionState()
		if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
			served <- seen{err: errors.New("no verified client chain")}
			return
		}
		leaf := st.PeerCertificates[0]
		vc := st.VerifiedChains[0]
		// One byte each way: the handshake is complete on both sides (TLS 1.3 sends the client's
		// certificate after the client thinks it is done).
		buf := make([]byte, 1)
		if _, err := srv.Read(buf); err != nil {
			served <- seen{err: fmt.Errorf("reading from the client: %w", err)}
			return
		}
		if _, err := srv.Write(buf); err != nil {
			served <- seen{err: fmt.Errorf("writing to the client: %w", err)}
			return
		}
		served <- seen{res: &MTLSResult{
			ThingName:     leaf.Subject.CommonName,
			CertificateID: certID(leaf),
			CA:            vc[len(vc)-1].Subject.String(),
			Version:       tls.VersionName(st.Version),
		}}
	}()

	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	clientErr := func() error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		own := &tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: chain[0]}
		cl := tls.Client(conn, &tls.Config{
			// Always the device's own chain, whatever CAs the server names: a device has one
			// identity, and the server, not the client, must be the one to refuse it.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return own, nil },
			RootCAs:              serverRoots,
			ServerName:           "127.0.0.1",
			MinVersion:           tls.VersionTLS12,
		})
		if err := cl.HandshakeContext(ctx); err != nil {
			return err
		}
		if _, err := cl.Write([]byte{1}); err != nil {
			return err
		}
		buf := make([]byte, 1)
		_, err = cl.Read(buf)
		return err
	}()
	if clientErr != nil {
		ln.Close()
	}
	var s seen
	select {
	case s = <-served:
	case <-ctx.Done():
		return nil, fmt.Errorf("mTLS check: no handshake within %v (client: %v)", timeout, clientErr)
	}
	switch {
	case s.err != nil:
		return nil, fmt.Errorf("mTLS check: the server (requiring a client certificate from the CA %q) refused the device's chain: %v (client: %v)",
			registered.Subject, s.err, clientErr)
	case clientErr != nil:
		return nil, fmt.Errorf("mTLS check: the device side failed: %w", clientErr)
	}
	return s.res, nil
}

// loopbackServerCert is a throwaway server identity for 127.0.0.1 and the pool that trusts it.
func loopbackServerCert() (tls.Certificate, *x509.CertPool, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "hilbench loopback AWS IoT endpoint"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: cert}, pool, nil
}

// LoadDeviceKey reads a device private key from a PEM file (EC PRIVATE KEY or PKCS#8 PRIVATE
// KEY; other blocks, such as a PUBLIC KEY after it, are skipped). Only a simulated device's key
// can be read this way: a real device's key never leaves it.
func LoadDeviceKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the device key: %w", err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%s holds no EC PRIVATE KEY or PRIVATE KEY PEM block", path)
		}
		var key any
		switch block.Type {
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: the %s block does not parse", path, block.Type) // never the key's bytes
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: a %T cannot sign", path, key)
		}
		return s, nil
	}
}

package pki

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// CompressedPublicKey is the 2D-barcode form (the FFS manufacturing guide) of a P-256 key: the
// DER SubjectPublicKeyInfo with the point in compressed form (SEC 1 2.3.3,
// as `openssl ec -pubin -conv_form compressed` writes it), base64 without
// header lines or newlines. The result is 80 characters and starts
// "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgAC" or "...IgAD".
func CompressedPublicKey(pub crypto.PublicKey) (string, error) {
	var raw []byte // uncompressed point 04 || X || Y
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("compressing public key: curve %s: %w", k.Curve.Params().Name, ErrUnsupportedKey)
		}
		ek, err := k.ECDH()
		if err != nil {
			return "", fmt.Errorf("compressing public key: %w", err)
		}
		raw = ek.Bytes()
	case *ecdh.PublicKey:
		if k.Curve() != ecdh.P256() {
			return "", fmt.Errorf("compressing public key: curve %v: %w", k.Curve(), ErrUnsupportedKey)
		}
		raw = k.Bytes()
	default:
		return "", fmt.Errorf("compressing public key of type %T: %w", pub, ErrUnsupportedKey)
	}
	point := make([]byte, 33)
	point[0] = 0x02 | raw[64]&1 // 02 for even Y, 03 for odd Y
	copy(point[1:], raw[1:33])
	spki := derSequence(derSequence(derOID(oidPublicKeyEC), derOID(oidCurveP256)), derBitString(point, 0))
	return base64.StdEncoding.EncodeToString(spki), nil
}

// ControlLogPublicKey is the DHA public key for the control log (the FFS provisioning guide):
// base64 of the certificate's DER SubjectPublicKeyInfo on one line. (Seed
// 002's `openssl x509 -pubkey -noout | openssl enc -base64 -d | openssl enc
// -base64` yields the same characters wrapped at 64 columns.)
func ControlLogPublicKey(cert *x509.Certificate) string {
	return base64.StdEncoding.EncodeToString(cert.RawSubjectPublicKeyInfo)
}

// Fingerprint is the lowercase hex SHA-256 of the DER certificate
// (`openssl x509 -fingerprint -sha256` without colons, lowercased).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// SamePublicKey reports whether a and b are the same key. Keys of different
// types, and keys whose type has no Equal method, are not the same.
func SamePublicKey(a, b crypto.PublicKey) bool {
	if a == nil || b == nil {
		return false
	}
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

package pki_test

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"hilbench/harness/pki"
)

// The middle of the ACS provisioning cycle (docs/ARCHITECTURE.md): check the device's
// CSR, issue, hand the chain to the device, verify what it reads back.
func Example() {
	var (
		dak     crypto.Signer     // SoftDAK key or YubiKey slot
		dakCert *x509.Certificate // dak-certificate.pem
		csrPEM  []byte            // ace hal dha get_field 0x201
	)
	profile, err := pki.LoadProfile("fixtures/profiles/device.conf", pki.ProfileOptions{})
	if err != nil {
		fmt.Println(err) // names file, line, section and key
		return
	}
	issuer := &pki.Issuer{Profile: profile, Signer: dak, CA: dakCert}
	issued, err := issuer.Issue(csrPEM)
	switch {
	case errors.Is(err, pki.ErrDeviceType):
		fmt.Println("wrong firmware/product on this station:", err)
		return
	case errors.Is(err, pki.ErrCSRRejected):
		fmt.Println("bad CSR, nothing signed:", err)
		return
	case err != nil:
		fmt.Println("station problem:", err)
		return
	}
	// ... put issued.ChainPEM on the device, set_cert, get_field 0x202 ...
	readBack := issued.ChainPEM
	chain, err := pki.ParseChainPEM(readBack)
	if err == nil {
		err = pki.VerifyChain(chain, nil, time.Now())
	}
	if err != nil || !pki.SamePublicKey(chain[0].PublicKey, issued.CSR.PublicKey) {
		fmt.Println("device lost its identity:", err)
		return
	}
	barcodeKey, _ := pki.CompressedPublicKey(chain[0].PublicKey)
	fmt.Println(pki.Fingerprint(chain[0]), barcodeKey, pki.ControlLogPublicKey(chain[0]))
}

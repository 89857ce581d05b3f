package simbench

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"hilbench/harness/bench"
	"hilbench/harness/signer/softdak"
	"hilbench/harness/signer/yubikey"
	yksim "hilbench/harness/signer/yubikey/sim"
)

// VirtualYubiKey is a virtual YubiKey plugged into pcscd (vpcd) holding a DAK in slot 9c whose
// certificate is signed by the simulated bench's development root, as a self-managed YubiKey is
// set up (the ACK YubiKey guide): key generated on the card, CSR signed by the CA, certificate imported.
type VirtualYubiKey struct {
	Card    *yksim.Card
	Plugged *yksim.Plugged
	Signer  bench.SignerConfig // a bench signer section for it
	release func()
}

// vpcd slot addresses and the reader names pcscd gives them.
var vpcdReaders = map[string]string{
	"127.0.0.1:35963": "Virtual PCD 00 00",
	"127.0.0.1:35964": "Virtual PCD 00 01",
}

// StartVirtualYubiKey makes the card in dir, plugs it into the vpcd slot at addr (waiting for the
// slot if another test binary holds it) and installs a DAK signed by the root in dakDir (made by
// softdak.InitDevelopment when absent).
func StartVirtualYubiKey(ctx context.Context, dir, dakDir, addr string) (_ *VirtualYubiKey, err error) {
	reader, ok := vpcdReaders[addr]
	if !ok {
		return nil, fmt.Errorf("unknown vpcd slot %s (want one of 127.0.0.1:35963, 127.0.0.1:35964)", addr)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := devRoot(dakDir)
	if err != nil {
		return nil, err
	}
	v := &VirtualYubiKey{}
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if v.release, err = yksim.LockSlot(ctx, addr); err != nil {
		return nil, err
	}
	if v.Card, err = yksim.Open(filepath.Join(dir, "yubikey.json"), yksim.Options{}); err != nil {
		return nil, err
	}
	// The card stays plugged in until Close, whatever becomes of ctx.
	if v.Plugged, err = yksim.Plug(context.Background(), addr, v.Card); err != nil {
		return nil, fmt.Errorf("plugging the virtual YubiKey into vpcd at %s (is pcscd running with vsmartcard-vpcd?): %w", addr, err)
	}
	select {
	case <-v.Plugged.Ready():
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("pcscd did not power the virtual YubiKey at %s within 15s", addr)
	}

	attRoot := filepath.Join(dir, "attestation-root.pem")
	if err := writePEM(attRoot, v.Card.AttestationRoot().Raw, 0o644); err != nil {
		return nil, err
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(yksim.DefaultPIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	admin := &yubikey.Admin{Reader: reader, AttestationRoots: []*x509.Certificate{v.Card.AttestationRoot()}}
	serial := v.Card.Serial()
	if err := waitVisible(ctx, admin, serial, 15*time.Second); err != nil {
		return nil, fmt.Errorf("the virtual YubiKey at %s: %w", addr, err)
	}
	if st, err := admin.Status(ctx, serial); err == nil && hasCertificate(st, "9c") {
		// A card from an earlier start keeps its DAK.
	} else {
		res, err := admin.InitDAK(ctx, serial, yubikey.InitOptions{
			ManagementKey: piv.DefaultManagementKey, PIN: yksim.DefaultPIN, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever,
			Subject: pkix.Name{CommonName: "hilbench virtual YubiKey DAK", Organization: []string{"hilbench development"}},
			CSRFile: filepath.Join(dir, "dak.csr"), Force: true, Replace: true,
		})
		if err != nil {
			return nil, fmt.Errorf("generating the DAK on the virtual YubiKey: %w", err)
		}
		certDER, err := root.issueCA(res.CSR)
		if err != nil {
			return nil, err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
		if _, err := admin.ImportDAKCertificate(ctx, serial, piv.SlotSignature, piv.DefaultManagementKey, certPEM); err != nil {
			return nil, fmt.Errorf("importing the DAK certificate: %w", err)
		}
	}
	v.Signer = bench.SignerConfig{
		Type: bench.SignerYubiKey, Serial: serial, Reader: reader, Slot: bench.DefaultSlot,
		PINFile: pinFile, Attestation: "required", AttestationRoots: []string{attRoot},
		Roots: []string{root.certPath}, ReplugTimeout: 10 * time.Second,
	}
	return v, nil
}

func hasCertificate(st *yubikey.StatusReport, slot string) bool {
	for _, s := range st.Slots {
		if s.Slot.String() == slot && s.Certificate != nil {
			return true
		}
	}
	return false
}

// Close unplugs the card and gives the vpcd slot back; the card's state file stays.
func (v *VirtualYubiKey) Close() error {
	var err error
	if v.Plugged != nil {
		err = v.Plugged.Close()
	}
	if v.release != nil {
		v.release()
	}
	return err
}

type devCA struct {
	cert     *x509.Certificate
	certPath string
	key      *softdak.SoftDAK
}

// devRoot opens (making it when absent) the development root of dakDir.
func devRoot(dakDir string) (*devCA, error) {
	rootCert := filepath.Join(dakDir, softdak.RootCertificateFile)
	rootKey := filepath.Join(dakDir, softdak.RootKeyFile)
	if _, err := os.Stat(rootKey); errors.Is(err, os.ErrNotExist) {
		if _, err := softdak.InitDevelopment(dakDir, softdak.InitOptions{}); err != nil {
			return nil, err
		}
	}
	key, err := softdak.Open(rootKey, rootCert)
	if err != nil {
		return nil, fmt.Errorf("opening the development root: %w", err)
	}
	return &devCA{cert: key.Certificate(), certPath: rootCert, key: key}, nil
}

// issueCA signs a DAK certificate (a CA for device certificates) for the CSR.
func (ca *devCA) issueCA(csr *x509.CertificateRequest) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               csr.Subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
}

func writePEM(path string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), mode)
}

// waitVisible waits until a PC/SC client finds the card with serial. Powered is not yet visible:
// pcscd may still be taking note of the card an earlier process unplugged from the same reader,
// and a client connecting then is told there is no card.
func waitVisible(ctx context.Context, admin *yubikey.Admin, serial uint32, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		cards, err := admin.List(ctx)
		for _, c := range cards {
			if c.Err == nil && c.Serial == serial {
				return nil
			}
		}
		if err == nil {
			err = fmt.Errorf("no PC/SC client sees it (cards seen: %v)", cards)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not visible within %s: %w", limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

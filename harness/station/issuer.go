package station

import (
	"context"
	"crypto"
	"crypto/x509"

	"hilbench/harness/device"
	"hilbench/harness/pki"
)

// interimIssuer presents the station's signing path as a device.Issuer until the ledger-backed
// pipeline replaces it: no lookups, no state records.
type interimIssuer struct{ st *Station }

var _ device.Issuer = interimIssuer{}

func (i interimIssuer) Issue(ctx context.Context, req device.IssueRequest) (*pki.Issued, error) {
	return i.st.Issue(ctx, req.Target, req.CSRPEM)
}

func (i interimIssuer) Lookup(context.Context, crypto.PublicKey) (*device.Known, error) {
	return nil, nil
}
func (i interimIssuer) Stored(context.Context, *x509.Certificate) error   { return nil }
func (i interimIssuer) Verified(context.Context, *x509.Certificate) error { return nil }
func (i interimIssuer) Roots() []*x509.Certificate                        { return i.st.Roots }

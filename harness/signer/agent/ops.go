package agent

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"hilbench/harness/device"
	"hilbench/harness/issue"
	"hilbench/harness/pki"
	"hilbench/harness/signer/audit"
)

// The operations below run on a connection's reader goroutine: whatever
// needs no DAK happens there, in parallel across clients, so bad requests
// and bad CSRs never wait for the key and never spend budget.

// issue checks an issue request and its CSR (the one check of the CSR:
// the worker issues the checked request), answers at once when the ledger
// already holds a chain for the CSR's key, and queues the rest for the DAK.
func (rt *runtime) issue(c *conn, req *request) {
	bad := func(msg string) { c.send(errResponse(req.ID, CodeBadRequest, msg)) }
	switch {
	case req.ID == "":
		bad("issue request has no id")
		return
	case req.Target == "":
		bad("issue request has no target (name the device or station slot the CSR comes from)")
		return
	case len(req.Target) > maxTarget:
		bad(fmt.Sprintf("target is %d bytes, at most %d", len(req.Target), maxTarget))
		return
	case len(req.DeviceID) > maxTarget:
		bad(fmt.Sprintf("device_id is %d bytes, at most %d", len(req.DeviceID), maxTarget))
		return
	case req.CSR == "":
		bad("issue request has no csr")
		return
	}
	csrPEM := []byte(req.CSR)
	if block, _ := pem.Decode(csrPEM); block == nil {
		bad("csr is not PEM: send the -----BEGIN CERTIFICATE REQUEST----- block the device printed")
		return
	}
	ir := device.IssueRequest{Target: req.Target, DeviceID: req.DeviceID, CSRPEM: csrPEM}
	if req.Replaces != "" {
		leaf, err := leafOf(req.Replaces)
		if err != nil {
			bad("replaces: " + err.Error())
			return
		}
		ir.Replaces = leaf
	}
	checked, err := rt.check(ir)
	if err != nil {
		we := errorFor(err)
		if we.Code == CodeCSRRejected {
			rt.rejected.Add(1)
		}
		rt.logf("signing agent: refused CSR from %q (%s, client %s): %s", req.Target, we.Code, peerText(c.peer), we.Message)
		c.send(response{ID: req.ID, Error: we})
		return
	}
	checked.Client, checked.RequestID = c.peer, req.ID

	// A key the ledger holds a chain for needs no signature: answer now
	// (also when the budget is spent). Anything else, including a ledger
	// that cannot answer here, is the worker's to decide.
	if known, err := rt.p.Lookup(rt.ctx, checked.CSR.PublicKey); err == nil && known != nil && known.Issued != nil &&
		pki.SamePublicKey(known.Issued.Certificate.PublicKey, checked.CSR.PublicKey) {
		resp := issuedResponse(req.ID, checked, known.Issued, true)
		if b, err := rt.budgetInfo(); err == nil {
			resp.Budget, resp.Warning = b, budgetWarning(b)
		}
		rt.reused.Add(1)
		rt.logf("signing agent: %q (client %s) asked for a device key the ledger holds a chain for (%s): answered with serial %s, nothing signed",
			req.Target, peerText(c.peer), known.State, resp.Serial)
		c.send(resp)
		return
	}

	j := &job{c: c, id: req.ID, target: req.Target, checked: checked, peer: c.peer, received: time.Now()}
	c.addInflight()
	if err := rt.q.push(j); err != nil {
		code, msg := CodeBusy, fmt.Sprintf("the signing agent's queue is full (%d waiting): retry later", rt.q.len())
		if errors.Is(err, ErrShuttingDown) {
			code, msg = CodeShuttingDown, "the signing agent is shutting down; nothing was signed for this request: retry when an agent runs again"
		}
		c.sendJob(errResponse(req.ID, code, msg))
	}
}

// issuedResponse is the answer to an issue request.
func issuedResponse(id string, checked *issue.Checked, is *pki.Issued, reused bool) response {
	leaf := is.Certificate
	return response{ID: id, OK: true, Chain: string(is.ChainPEM), Serial: audit.SerialHex(leaf), SHA256: audit.SHA256Hex(leaf.Raw),
		CSRSHA256: audit.SHA256Hex(checked.CSR.Raw), Reused: reused}
}

// lookup answers what the ledger holds for a device public key.
func (rt *runtime) lookup(c *conn, req *request) {
	bad := func(msg string) { c.send(errResponse(req.ID, CodeBadRequest, msg)) }
	switch {
	case req.ID == "":
		bad("lookup request has no id")
		return
	case req.Key == "":
		bad("lookup request has no key (the device public key: base64 of its SubjectPublicKeyInfo DER)")
		return
	}
	der, err := base64.StdEncoding.DecodeString(req.Key)
	if err != nil {
		bad("key is not base64: " + err.Error())
		return
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		bad("key is not a SubjectPublicKeyInfo: " + err.Error())
		return
	}
	known, err := rt.p.Lookup(rt.ctx, pub)
	if err != nil {
		we := ledgerErrorFor(err)
		rt.logf("signing agent: lookup (client %s): %s: %s", peerText(c.peer), we.Code, we.Message)
		c.send(response{ID: req.ID, Error: we})
		return
	}
	resp := response{ID: req.ID, OK: true}
	if known != nil {
		resp.State = known.State
		if is := known.Issued; is != nil {
			resp.Chain, resp.Serial, resp.SHA256 = string(is.ChainPEM), audit.SerialHex(is.Certificate), audit.SHA256Hex(is.Certificate.Raw)
		}
	}
	c.send(resp)
}

// advance records that a leaf's chain is on the device (stored) or was
// read back and verified (verified).
func (rt *runtime) advance(c *conn, req *request) {
	bad := func(msg string) { c.send(errResponse(req.ID, CodeBadRequest, msg)) }
	switch {
	case req.ID == "":
		bad(req.Op + " request has no id")
		return
	case req.Certificate == "":
		bad(req.Op + " request has no certificate (the device's leaf certificate, PEM)")
		return
	}
	leaf, err := leafOf(req.Certificate)
	if err != nil {
		bad("certificate: " + err.Error())
		return
	}
	if req.Op == OpStored {
		err = rt.p.Stored(rt.ctx, leaf)
	} else {
		err = rt.p.Verified(rt.ctx, leaf)
	}
	if err != nil {
		we := ledgerErrorFor(err)
		rt.logf("signing agent: recording serial %s as %s (client %s): %s: %s", audit.SerialHex(leaf), req.Op, peerText(c.peer), we.Code, we.Message)
		c.send(response{ID: req.ID, Error: we})
		return
	}
	rt.logf("signing agent: serial %s recorded as %s (client %s)", audit.SerialHex(leaf), req.Op, peerText(c.peer))
	c.send(response{ID: req.ID, OK: true})
}

// leafOf parses the first certificate of a PEM chain.
func leafOf(certPEM string) (*x509.Certificate, error) {
	chain, err := pki.ParseChainPEM([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("not a certificate PEM: %w", err)
	}
	return chain[0], nil
}

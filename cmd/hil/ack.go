package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/pki"
	"hilbench/harness/power"
	"hilbench/harness/report"
	"hilbench/harness/station"
	"hilbench/targets/ack"
)

// ackFacts puts the line statistics into the report: retransmissions are how a noisy line shows.
func ackFacts(o *report.Outcome, st ack.Stats) {
	o.Facts["frames_sent"] = strconv.Itoa(st.FramesSent)
	o.Facts["retransmissions"] = strconv.Itoa(st.Retransmissions)
	o.Facts["naks"] = strconv.Itoa(st.NAKs)
	o.Facts["damaged_frames"] = strconv.Itoa(st.Damaged)
	o.Facts["timeouts"] = strconv.Itoa(st.Timeouts)
	o.Facts["recoveries"] = strconv.Itoa(st.Recoveries)
	o.Facts["busy_answers"] = strconv.Itoa(st.Busy)
	o.Facts["chunks_shortened"] = strconv.Itoa(st.Shrinks)
	o.Facts["tx_bytes"] = strconv.FormatInt(st.BytesSent, 10)
	o.Facts["rx_bytes"] = strconv.FormatInt(st.BytesReceived, 10)
}

// previousIssue is the chain the station issued for this target in an earlier run, if its record
// is there: a module whose key survived gets it again without a new signature.
func previousIssue(out, target string) *pki.Issued {
	data, err := os.ReadFile(filepath.Join(recordDir(out, target), "chain.pem"))
	if err != nil {
		return nil
	}
	chain, err := pki.ParseChainPEM(data)
	if err != nil || len(chain) == 0 {
		return nil
	}
	return &pki.Issued{Chain: chain, Certificate: chain[0], ChainPEM: data, CSR: &x509.CertificateRequest{PublicKey: chain[0].PublicKey}}
}

func provisionACK(ctx context.Context, t *bench.Target, st *station.Station, profile *pki.Profile, dir, out string,
	reprovision bool, prog *progress, o *report.Outcome) error {
	s, err := ack.Open(ctx, t, dir, console.NewRedactor())
	if err != nil {
		return err
	}
	defer s.Close()
	opts := ack.Options{Reprovision: reprovision, Roots: st.Roots, Progress: prog.step, Profile: profile,
		Previous: previousIssue(out, t.Name)}
	if t.Power != nil {
		pw, err := power.ForTarget(t)
		if err != nil {
			return err
		}
		defer power.Close(pw)
		opts.PowerCycle = pw.Cycle
	}
	defer func() { ackFacts(o, s.Stats()) }()
	if t.ACK != nil && t.ACK.Mode == bench.ACKModeExternal {
		chain, _, err := s.ProvisionExternal(ctx, opts)
		if err != nil {
			return err
		}
		o.Facts["sha256"] = pki.Fingerprint(chain[0])
		o.Facts["provisioned_by"] = "vendor tool"
		return nil
	}
	issued, err := s.Provision(ctx, st.Issue, opts)
	if issued != nil {
		if rerr := writeRecord(out, t.Name, issued, err == nil); rerr != nil && err == nil {
			err = rerr
		}
		o.Facts["sha256"] = pki.Fingerprint(issued.Certificate)
	}
	return err
}

func verifyACK(ctx context.Context, t *bench.Target, dir, out string, roots []*x509.Certificate,
	reboot, reset bool, prog *progress, o *report.Outcome) error {
	s, err := ack.Open(ctx, t, dir, console.NewRedactor())
	if err != nil {
		return err
	}
	defer s.Close()
	defer func() { ackFacts(o, s.Stats()) }()
	opts := ack.Options{Roots: roots}
	check := func() error {
		prog.step(t.Name, ack.StepVerify)
		chain, err := s.Verify(ctx, opts)
		if err != nil {
			return err
		}
		o.Facts["sha256"] = pki.Fingerprint(chain[0])
		if prev := previousIssue(out, t.Name); prev != nil {
			if !bytes.Equal(prev.Certificate.Raw, chain[0].Raw) {
				return &ack.StepError{Target: t.Name, Step: ack.StepVerify, Err: fmt.Errorf("the module's certificate (%s) is not the one the station recorded (%s)",
					pki.Fingerprint(chain[0]), pki.Fingerprint(prev.Certificate))}
			}
			o.Facts["record"] = "matched"
		} else {
			o.Facts["record"] = "none"
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	if reboot {
		prog.step(t.Name, ack.StepReboot)
		if _, err := s.Reboot(ctx); err != nil {
			return err
		}
		if err := check(); err != nil {
			return err
		}
	}
	if reset {
		prog.step(t.Name, ack.StepReset)
		if _, err := s.FactoryReset(ctx); err != nil {
			return err
		}
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"hilbench/harness/awsiot"
	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/report"
	"hilbench/harness/station"
)

// StepMTLS is hil verify --mtls's step: the loopback AWS IoT handshake.
const StepMTLS = "mtls"

// mtlsFlags are hil verify's --mtls flags: after the read-back check, a TLS handshake with the
// device's chain and key against a loopback server that requires a client certificate from the
// contract manufacturer's registered CA (harness/awsiot).
type mtlsFlags struct {
	on      bool
	key     string
	timeout time.Duration

	aws *awsiot.Config
	ca  *x509.Certificate
}

func (m *mtlsFlags) register(fs interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	fs.BoolVar(&m.on, "mtls", false, "AWS IoT profiles: also connect with the device's chain and key to a loopback TLS server that requires the contract manufacturer's CA (needs --mtls-key)")
	fs.StringVar(&m.key, "mtls-key", "", "with --mtls: the device's private key file, {target} replaced by the target's name (only a simulated device's key can be read)")
	fs.DurationVar(&m.timeout, "mtls-timeout", awsiot.DefaultMTLSTimeout, "with --mtls: how long the handshake may take")
}

// check refuses what cannot work before any device or signer is opened.
func (m *mtlsFlags) check(b *bench.Bench) error {
	if !m.on {
		if m.key != "" {
			return fmt.Errorf("%w: --mtls-key goes with --mtls", errUsage)
		}
		return nil
	}
	if m.key == "" {
		return fmt.Errorf("%w: --mtls needs the device's private key for the client side of the handshake (--mtls-key FILE, {target} = the target's name): "+
			"a simulated device's key can be read from its storage (hil sim: DIR/devices/{target}/dha/dha_key.pem); a real device's key never leaves it, "+
			"so on hardware the handshake has to run on the device itself", errUsage)
	}
	aws, err := awsConfig(b)
	if err != nil {
		return err
	}
	if aws == nil {
		return fmt.Errorf("--mtls: the bench's profile %s has no [%s] section: it is not an AWS IoT profile (see fixtures/profiles/aws-iot.conf)", b.Profile.DeviceConf, awsiot.Section)
	}
	m.aws = aws
	return nil
}

// open finds the registered CA among the station's DAK certificate and roots.
func (m *mtlsFlags) open(st *station.Station) error {
	if !m.on {
		return nil
	}
	candidates := st.Roots
	if st.Certs != nil {
		candidates = append([]*x509.Certificate{st.Certs.CA}, st.Roots...)
	}
	ca, err := m.aws.RegisteredCA(candidates)
	if err != nil {
		return fmt.Errorf("--mtls: %w", err)
	}
	m.ca = ca
	return nil
}

// run reads the chain the device holds (just verified) and shakes hands with it.
func (m *mtlsFlags) run(ctx context.Context, d device.Device, prog *progress, o *report.Outcome) error {
	if !m.on {
		return nil
	}
	name := d.Name()
	prog.step(name, StepMTLS)
	chain, err := d.ReadChain(ctx)
	if err != nil {
		return device.Fail(name, device.StepReadBack, err)
	}
	key, err := awsiot.LoadDeviceKey(strings.ReplaceAll(m.key, "{target}", name))
	if err != nil {
		return device.Fail(name, StepMTLS, err)
	}
	res, err := awsiot.CheckMTLS(ctx, chain, key, m.ca, m.timeout)
	if err != nil {
		return device.Fail(name, StepMTLS, err)
	}
	o.Facts["mtls"] = "passed"
	o.Facts["thing_name"] = res.ThingName
	o.Facts["aws_certificate_id"] = res.CertificateID
	o.Facts["tls_version"] = res.Version
	prog.step(name, fmt.Sprintf("mTLS handshake as thing %s (%s, CA %s)", res.ThingName, res.Version, res.CA))
	return nil
}

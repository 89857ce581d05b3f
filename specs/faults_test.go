package specs

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/targets/acs"
	"hilbench/targets/acs/sim"
)

// Faults the simulator injects; each must give a clear error naming the step, sign nothing it
// should not, and leave the device usable for the next attempt.
var _ = Describe("ACS faults", Ordered, Label("sim"), func() {
	var (
		s       *acs.Session
		dev     *sim.Device
		counter *countingIssuer
	)
	signed := func() int { return int(counter.issued.Load()) }
	// attempt provisions with a fresh driver (a new run) and short timeouts.
	attempt := func(ctx context.Context) (*device.Result, error) {
		cfg := mustConfig(targetFor(1))
		cfg.CommandTimeout = 3 * time.Second
		cfg.BootTimeout = 5 * time.Second
		return acs.New(s.Console(), cfg).Provision(ctx, counter, device.Options{})
	}
	// attemptSilent is attempt on a device that answers nothing: every timeout runs out, and how
	// long they are is not under test.
	attemptSilent := func(ctx context.Context) (*device.Result, error) {
		cfg := mustConfig(targetFor(1))
		cfg.CommandTimeout = time.Second
		cfg.BootTimeout = time.Second
		return acs.New(s.Console(), cfg).Provision(ctx, counter, device.Options{})
	}
	stepOf := device.StepOf
	verify := func(ctx context.Context, want *pki.Issued) error {
		return s.Verify(ctx, want, theStation.Issuer.Roots(), time.Now())
	}

	// provisioned gives the device a chain when it has none, so that a spec that needs one also
	// runs on its own (ginkgo --focus), not only after the set_cert retry spec provisioned it.
	provisioned := func(ctx context.Context) {
		Expect(s.Sync(ctx)).To(Succeed()) // a device still booting would not hear the command
		_, err := s.ReadChain(ctx)
		if errors.Is(err, device.ErrNoChain) {
			_, err = acs.New(s.Console(), mustConfig(targetFor(1))).Provision(ctx, theStation.Issuer, device.Options{})
		}
		Expect(err).NotTo(HaveOccurred())
	}

	BeforeAll(func(ctx SpecContext) {
		requireSim()
		s = openTarget(ctx, 1)
		var err error
		dev, err = simulated.Device(targetFor(1).Name)
		Expect(err).NotTo(HaveOccurred())
	})
	BeforeEach(func() { counter = &countingIssuer{Issuer: theStation.Issuer} })

	It("names the command and shows the last output when the device falls silent", func(ctx SpecContext) {
		dev.SetSilent(true)
		DeferCleanup(dev.SetSilent, false)
		_, err := attemptSilent(ctx)
		Expect(err).To(HaveOccurred())
		// The prompt of the command before may still arrive after the device fell silent.
		Expect(stepOf(err)).To(BeElementOf(acs.StepSync, device.StepCheck))
		var te *console.TimeoutError
		Expect(errors.As(err, &te)).To(BeTrue(), "a timeout error: %v", err)
		Expect(signed()).To(BeZero())
	}, SpecTimeout(30*time.Second))

	It("refuses a missing CSR and signs nothing", func(ctx SpecContext) {
		Expect(dev.SetFault(sim.FaultCSRMissing, true)).To(Succeed())
		DeferCleanup(dev.SetFault, sim.FaultCSRMissing, false)
		_, err := attempt(ctx)
		Expect(stepOf(err)).To(Equal(acs.StepCSR), "%v", err)
		Expect(err.Error()).To(ContainSubstring("no CERTIFICATE REQUEST"))
		Expect(signed()).To(BeZero())
	}, SpecTimeout(30*time.Second))

	It("refuses a truncated CSR and signs nothing", func(ctx SpecContext) {
		Expect(dev.SetFault(sim.FaultCSRTruncated, true)).To(Succeed())
		DeferCleanup(dev.SetFault, sim.FaultCSRTruncated, false)
		_, err := attempt(ctx)
		Expect(stepOf(err)).To(Equal(acs.StepCSR), "%v", err)
		Expect(err.Error()).To(ContainSubstring("truncated"))
		Expect(signed()).To(BeZero())
	}, SpecTimeout(30*time.Second))

	It("reports set_cert rejected, after signing exactly once", func(ctx SpecContext) {
		Expect(dev.SetFault(sim.FaultSetCertReject, true)).To(Succeed())
		DeferCleanup(dev.SetFault, sim.FaultSetCertReject, false)
		_, err := attempt(ctx)
		Expect(stepOf(err)).To(Equal(acs.StepSetCert), "%v", err)
		Expect(err.Error()).To(ContainSubstring("exited with status"))
		Expect(signed()).To(Equal(1))
	}, SpecTimeout(30*time.Second))

	It("retries a failed set_cert with the chain already issued, never signing twice", func(ctx SpecContext) {
		Expect(dev.SetFault(sim.FaultSetCertReject, true)).To(Succeed())
		cfg := mustConfig(targetFor(1))
		d := acs.New(s.Console(), cfg)
		first, err := d.Provision(ctx, counter, device.Options{})
		Expect(stepOf(err)).To(Equal(acs.StepSetCert))
		Expect(first).NotTo(BeNil(), "a failed run still names the chain it was issued")
		Expect(dev.SetFault(sim.FaultSetCertReject, false)).To(Succeed())
		second, err := d.Provision(ctx, counter, device.Options{})
		Expect(err).NotTo(HaveOccurred())
		Expect(signed()).To(Equal(1))
		Expect(second.Issued.ChainPEM).To(Equal(first.Issued.ChainPEM))
	}, SpecTimeout(30*time.Second))

	It("survives noise on the line before the prompt", func(ctx SpecContext) {
		provisioned(ctx)
		dev.InjectNoise(200)
		cfg := mustConfig(targetFor(1))
		cfg.CommandTimeout = 5 * time.Second
		Expect(acs.New(s.Console(), cfg).Sync(ctx)).To(Succeed())
		chain, err := s.ReadChain(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(pki.VerifyChain(chain, theStation.Issuer.Roots(), time.Now())).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("detects a chain read back different from the one issued", func(ctx SpecContext) {
		provisioned(ctx)
		chain, err := s.ReadChain(ctx)
		Expect(err).NotTo(HaveOccurred())
		issued := &pki.Issued{Chain: chain, Certificate: chain[0], CSR: &x509.CertificateRequest{PublicKey: chain[0].PublicKey}}
		Expect(dev.SetFault(sim.FaultChainCorrupt, true)).To(Succeed())
		DeferCleanup(dev.SetFault, sim.FaultChainCorrupt, false)
		err = verify(ctx, issued)
		Expect(stepOf(err)).To(Equal(device.StepReadBack), "%v", err)
	}, SpecTimeout(30*time.Second))

	It("fails clearly when the prompt never comes after a reboot", func(ctx SpecContext) {
		Expect(dev.SetFault(sim.FaultNoPrompt, true)).To(Succeed())
		cfg := mustConfig(targetFor(1))
		cfg.BootTimeout = 2 * time.Second // runs out: the prompt never comes
		err := acs.New(s.Console(), cfg).Reboot(ctx)
		Expect(stepOf(err)).To(Equal(device.StepReboot), "%v", err)
		Expect(err.Error()).To(ContainSubstring("no prompt"))
		Expect(dev.SetFault(sim.FaultNoPrompt, false)).To(Succeed())
		dev.Reboot()
		cfg.BootTimeout = 10 * time.Second
		cfg.CommandTimeout = 10 * time.Second
		Expect(acs.New(s.Console(), cfg).Sync(ctx)).To(Succeed(), "the device comes back once its prompt does")
	}, SpecTimeout(time.Minute))
})

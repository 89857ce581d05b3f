package specs

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/targets/acs"
)

// openTarget opens this process's n-th target; the ACS specs use its console too.
func openTarget(ctx context.Context, n int) *acs.Session {
	GinkgoHelper()
	d := openDevice(ctx, theBench, targetFor(n))
	s, ok := d.(*acs.Session)
	if !ok {
		Skip(fmt.Sprintf("target %s is not an ACS device (%T)", d.Name(), d))
	}
	return s
}

var _ = Describe("ACS DHA identity", Ordered, Label("acs"), func() {
	var (
		s      *acs.Session
		issued *pki.Issued
	)
	verify := func(ctx context.Context) error {
		return s.Verify(ctx, issued, theStation.Issuer.Roots(), time.Now())
	}

	BeforeAll(func(ctx SpecContext) {
		s = openTarget(ctx, 0)
	})

	It("provisions the device: key_gen, CSR, issue, upload, set_cert, read back", Label("destructive"), func(ctx SpecContext) {
		requireDestructive()
		res, err := s.Provision(ctx, theStation.Issuer, device.Options{})
		Expect(err).NotTo(HaveOccurred())
		issued = res.Issued
		Expect(len(issued.Chain)).To(BeNumerically(">=", 2), "device certificate and DAK certificate")
		Expect(pki.SamePublicKey(issued.Certificate.PublicKey, issued.CSR.PublicKey)).To(BeTrue())
	}, SpecTimeout(2*time.Minute))

	It("reads back the identical chain, valid to the roots", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		raw, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).To(Equal(string(issued.ChainPEM)))
		Expect(verify(ctx)).To(Succeed())
	}, SpecTimeout(time.Minute))

	It("keeps the identical chain across a soft reboot", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		Expect(s.Reboot(ctx)).To(Succeed())
		Expect(verify(ctx)).To(Succeed())
	}, SpecTimeout(3*time.Minute))

	It("keeps the identical chain across a factory reset, which wipes /data", Label("destructive"), func(ctx SpecContext) {
		requireDestructive()
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		probe := s.ChainPath() + ".probe"
		res, err := s.Console().Shell(ctx, "echo user-data > "+probe+" && test -e "+s.ChainPath())
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Status).To(Equal(0), "the chain file and a user file exist in /data before the reset")

		Expect(s.FactoryReset(ctx)).To(Succeed())
		Expect(verify(ctx)).To(Succeed())

		for _, p := range []string{probe, s.ChainPath()} {
			res, err := s.Console().Shell(ctx, "test -e "+p)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Status).NotTo(Equal(0), "%s survived the factory reset", p)
		}
	}, SpecTimeout(3*time.Minute))

	It("reports a device holding the chain the ledger records as already provisioned, signing nothing", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		if !ledgerHolds(ctx, theStation.Issuer, issued.Chain) {
			Skip("the station's Issuer keeps no ledger of this chain")
		}
		c := &countingIssuer{Issuer: theStation.Issuer}
		fresh := acs.New(s.Console(), mustConfig(targetFor(0))) // a new run: nothing issued in it
		res, err := fresh.Provision(ctx, c, device.Options{})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Already).To(BeTrue())
		Expect(res.Issued.Certificate.Equal(issued.Certificate)).To(BeTrue())
		Expect(c.issued.Load()).To(BeZero())
	}, SpecTimeout(time.Minute))

	It("refuses to provision a device holding a chain the ledger does not know", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		c := &countingIssuer{Issuer: theStation.Issuer, forget: true}
		fresh := acs.New(s.Console(), mustConfig(targetFor(0)))
		_, err := fresh.Provision(ctx, c, device.Options{})
		Expect(err).To(MatchError(device.ErrAlreadyProvisioned))
		Expect(device.StepOf(err)).To(Equal(device.StepCheck))
		Expect(err.Error()).To(ContainSubstring("--reprovision"))
		Expect(c.issued.Load()).To(BeZero())
		Expect(verify(ctx)).To(Succeed(), "the refused attempt left the identity alone")
	}, SpecTimeout(time.Minute))
})

func mustConfig(t *bench.Target) acs.Config {
	GinkgoHelper()
	cfg, err := acs.ConfigFromBench(t)
	Expect(err).NotTo(HaveOccurred())
	return cfg
}

var _ = Describe("ACS console over USB-serial", Label("acs", "hw"), func() {
	It("keeps talking to a device whose USB-serial adapter re-enumerates across a reboot", func(ctx SpecContext) {
		if simulated != nil {
			Skip("needs real hardware: a console found by USB identity")
		}
		t := targetFor(0)
		if t.Console.USB == nil || t.Console.Reopen == 0 {
			Skip(fmt.Sprintf("target %s has no console.usb with console.reopen", t.Name))
		}
		s := openTarget(ctx, 0)
		before, err := s.ReadChainPEM(ctx)
		if err != nil {
			Skip(fmt.Sprintf("target %s holds no chain to compare: %v", t.Name, err))
		}
		Expect(s.Reboot(ctx)).To(Succeed())
		after, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(after)).To(Equal(string(before)))
	}, SpecTimeout(3*time.Minute))
})

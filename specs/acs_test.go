package specs

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/pki"
	"hilbench/targets/acs"
)

func openTarget(ctx context.Context, n int) *acs.Session {
	t := targetFor(n)
	s, err := acs.Open(ctx, t, runOut, console.NewRedactor())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	return s
}

var _ = Describe("ACS DHA identity", Ordered, Label("acs"), func() {
	var (
		s      *acs.Session
		issued *pki.Issued
		opts   acs.Options
	)

	BeforeAll(func(ctx SpecContext) {
		s = openTarget(ctx, 0)
		opts = acs.Options{Roots: theStation.Roots}
	})

	It("provisions the device: key_gen, CSR, issue, upload, set_cert, read back", Label("destructive"), func(ctx SpecContext) {
		requireDestructive()
		var err error
		issued, err = s.Provision(ctx, theStation.Issue, opts)
		Expect(err).NotTo(HaveOccurred())
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
		Expect(s.Verify(ctx, issued, opts)).To(Succeed())
	}, SpecTimeout(time.Minute))

	It("keeps the identical chain across a soft reboot", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		Expect(s.Reboot(ctx)).To(Succeed())
		Expect(s.Verify(ctx, issued, opts)).To(Succeed())
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
		Expect(s.Verify(ctx, issued, opts)).To(Succeed())

		for _, p := range []string{probe, s.ChainPath()} {
			res, err := s.Console().Shell(ctx, "test -e "+p)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Status).NotTo(Equal(0), "%s survived the factory reset", p)
		}
	}, SpecTimeout(3*time.Minute))

	It("refuses to provision an already provisioned device", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		signed := 0
		count := func(ctx context.Context, target string, csr []byte) (*pki.Issued, error) {
			signed++
			return theStation.Issue(ctx, target, csr)
		}
		fresh := acs.New(s.Console(), mustConfig(targetFor(0)))
		_, err := fresh.Provision(ctx, count, opts)
		Expect(err).To(MatchError(acs.ErrAlreadyProvisioned))
		var se *acs.StepError
		Expect(err).To(BeAssignableToTypeOf(se))
		Expect(signed).To(Equal(0))
		Expect(s.Verify(ctx, issued, opts)).To(Succeed(), "the refused attempt left the identity alone")
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

package specs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/pki"
	"hilbench/targets/ack"
	acksim "hilbench/targets/ack/sim"
)

func requireACK() {
	if ackBench == nil {
		Skip("no ACK modules: pass --ack-bench FILE on hardware")
	}
}

func requireSimACK() {
	requireACK()
	if simACK == nil {
		Skip("needs the simulated ACK modules (fault injection)")
	}
}

// ackTarget is the n-th native-mode ACK target of the bench.
func ackTarget(n int) *bench.Target {
	for i := range ackBench.Targets {
		t := &ackBench.Targets[i]
		if t.ACK == nil || t.ACK.Mode != bench.ACKModeExternal {
			if n == 0 {
				return t
			}
			n--
		}
	}
	Skip("the ACK bench has too few native-mode modules")
	return nil
}

// openModule opens an ACK target through targets.Open: a native Session or an ExternalSession.
func openModule(ctx context.Context, t *bench.Target) device.Device {
	GinkgoHelper()
	return openDevice(ctx, ackBench, t)
}

// openNative opens a native-mode module, for specs that look at its HELLO and line statistics.
func openNative(ctx context.Context, t *bench.Target) *ack.Session {
	GinkgoHelper()
	d := openModule(ctx, t)
	s, ok := d.(*ack.Session)
	Expect(ok).To(BeTrue(), "target %s opened as %T, want a native ACK session", t.Name, d)
	return s
}

func ackRoots() []*x509.Certificate { return ackStation.Issuer.Roots() }

// opensslVerify has openssl judge a chain (leaf first) against the station's roots.
func opensslVerify(chainPEM []byte, roots []*x509.Certificate) {
	dir := GinkgoT().TempDir()
	chain, err := pki.ParseChainPEM(chainPEM)
	Expect(err).NotTo(HaveOccurred())
	write := func(name string, certs []*x509.Certificate) string {
		var out []byte
		for _, c := range certs {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		path := filepath.Join(dir, name)
		Expect(os.WriteFile(path, out, 0o644)).To(Succeed())
		return path
	}
	args := []string{"verify", "-CAfile", write("roots.pem", roots)}
	if len(chain) > 1 {
		args = append(args, "-untrusted", write("untrusted.pem", chain[1:]))
	}
	args = append(args, write("leaf.pem", chain[:1]))
	out, err := exec.Command("openssl", args...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "openssl verify: %s", out)
}

var _ = Describe("ACK module identity (native mode)", Ordered, Label("ack"), func() {
	var (
		t      *bench.Target
		s      *ack.Session
		issued *pki.Issued
	)
	BeforeAll(func(ctx SpecContext) {
		requireACK()
		t = ackTarget(0)
		s = openNative(ctx, t)
	})

	It("provisions the module with the DAK: key on the module, CSR, issue, upload, commit, read back", Label("destructive"), func(ctx SpecContext) {
		requireDestructive()
		res, err := s.Provision(ctx, ackStation.Issuer, device.Options{})
		Expect(err).NotTo(HaveOccurred())
		issued = res.Issued
		Expect(pki.SamePublicKey(issued.Certificate.PublicKey, issued.CSR.PublicKey)).To(BeTrue())
		Expect(issued.Certificate.Subject.CommonName).To(Equal(s.Info().DSN), "CN is the module's DSN")
		opensslVerify(issued.ChainPEM, ackRoots())
	}, SpecTimeout(2*time.Minute))

	It("reads back the identical chain", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		got, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal(string(issued.ChainPEM)))
		Expect(s.Verify(ctx, issued, ackRoots(), time.Now())).To(Succeed())
	}, SpecTimeout(time.Minute))

	It("keeps the identical chain across a reboot", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		Expect(s.Reboot(ctx)).To(Succeed())
		got, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal(string(issued.ChainPEM)))
		Expect(s.Verify(ctx, issued, ackRoots(), time.Now())).To(Succeed())
	}, SpecTimeout(time.Minute))

	It("keeps the identical chain across a factory reset, which clears user data", Label("destructive"), func(ctx SpecContext) {
		requireDestructive()
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		if simACK != nil {
			m, err := simACK.Module(t.Name)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(filepath.Join(m.UserDataDir(), "wifi.json"), []byte(`{"ssid":"lab"}`), 0o600)).To(Succeed())
			defer func() {
				entries, _ := os.ReadDir(m.UserDataDir())
				for _, e := range entries {
					Expect(e.Name()).NotTo(Equal("wifi.json"), "factory reset left user data")
				}
			}()
		}
		Expect(s.FactoryReset(ctx)).To(Succeed())
		got, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal(string(issued.ChainPEM)))
	}, SpecTimeout(time.Minute))

	It("reports a module holding the chain the ledger records as already provisioned, signing nothing", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		if !ledgerHolds(ctx, ackStation.Issuer, issued.Chain) {
			Skip("the station's Issuer keeps no ledger of this chain")
		}
		s.Close()
		fresh := openModule(ctx, t) // a new run: nothing issued in it
		c := &countingIssuer{Issuer: ackStation.Issuer}
		res, err := fresh.Provision(ctx, c, device.Options{})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Already).To(BeTrue())
		Expect(res.Issued.Certificate.Equal(issued.Certificate)).To(BeTrue())
		Expect(c.issued.Load()).To(BeZero())
	}, SpecTimeout(time.Minute))

	It("refuses to provision a module holding a chain the ledger does not know", func(ctx SpecContext) {
		if issued == nil {
			Skip("nothing was provisioned in this run")
		}
		s.Close()
		fresh := openModule(ctx, t)
		c := &countingIssuer{Issuer: ackStation.Issuer, forget: true}
		_, err := fresh.Provision(ctx, c, device.Options{})
		Expect(err).To(MatchError(device.ErrAlreadyProvisioned))
		Expect(device.StepOf(err)).To(Equal(device.StepCheck))
		Expect(c.issued.Load()).To(BeZero())
	}, SpecTimeout(time.Minute))
})

var _ = Describe("ACK modules on a bad line and through power loss", Ordered, Label("ack", "sim"), func() {
	BeforeAll(func() { requireSimACK() })

	provisionThrough := func(ctx context.Context, t *bench.Target, faults acksim.LineFaults) ack.Stats {
		m, err := simACK.Module(t.Name)
		Expect(err).NotTo(HaveOccurred())
		m.SetLineFaults(faults)
		defer m.SetLineFaults(acksim.LineFaults{})
		s := openNative(ctx, t)
		res, err := s.Provision(ctx, ackStation.Issuer, device.Options{Reprovision: true})
		Expect(err).NotTo(HaveOccurred())
		m.SetLineFaults(acksim.LineFaults{})
		got, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal(string(res.Issued.ChainPEM)))
		st := s.LineStats()
		Expect(s.Stats()["retransmissions"]).To(Equal(int64(st.Retransmissions)), "the report's figure is the driver's")
		return st
	}

	It("provisions through line noise at a 1e-4 byte error rate", func(ctx SpecContext) {
		st := provisionThrough(ctx, ackTarget(1), acksim.LineFaults{Noise: 3e-5, Drop: 3e-5, Corrupt: 4e-5})
		AddReportEntry("retransmissions at 1e-4", st.Retransmissions)
		GinkgoWriter.Printf("1e-4: %+v\n", st)
	}, SpecTimeout(2*time.Minute))

	It("provisions through line noise at a 1e-3 byte error rate, retransmitting what was damaged", func(ctx SpecContext) {
		st := provisionThrough(ctx, ackTarget(1), acksim.LineFaults{Noise: 3e-4, Drop: 3e-4, Corrupt: 4e-4})
		AddReportEntry("retransmissions at 1e-3", st.Retransmissions)
		Expect(st.Retransmissions).To(BeNumerically(">", 0), "about 10 of ~10 KB damaged: some frames must have been sent again")
	}, SpecTimeout(2*time.Minute))

	It("leaves the module provisioned and verified after a power cut at 20 random points of the certificate write", func(ctx SpecContext) {
		t := ackTarget(2)
		m, err := simACK.Module(t.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(t.Power).NotTo(BeNil(), "the driver cycles a silent module's power through the bench's power section")
		rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 20))
		for i := range 20 {
			cut := acksim.PowerCut{Phase: "commit", AtByte: 1 + rng.IntN(1400)}
			if i%2 == 1 {
				cut.Phase = "upload"
			}
			// Mostly brown-outs (the module restarts by itself); some cuts leave it dark until the
			// driver finds it silent and cycles its power. A dark COMMIT costs the slow timeout
			// (ack.slow_timeout, 1 s on the simulated bench) per unanswered send, so only one of those.
			cut.RestoreAfter = 100 * time.Millisecond
			if (cut.Phase == "upload" && i%4 == 3) || i == 2 {
				cut.RestoreAfter = 0
			}
			By(fmt.Sprintf("cut %d: %s at byte %d, restore after %v", i+1, cut.Phase, cut.AtByte, cut.RestoreAfter))
			m.ArmPowerCut(cut)
			s := openNative(ctx, t)
			res, err := s.Provision(ctx, ackStation.Issuer, device.Options{Reprovision: true})
			Expect(err).NotTo(HaveOccurred())
			issued := res.Issued
			Expect(m.Powered()).To(BeTrue())
			got, err := s.ReadChainPEM(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(got)).To(Equal(string(issued.ChainPEM)))
			Expect(s.Verify(ctx, issued, ackRoots(), time.Now())).To(Succeed())
			// The stored file is whole: the module's own storage, read by openssl.
			stored, err := os.ReadFile(m.CertPath())
			Expect(err).NotTo(HaveOccurred())
			Expect(string(stored)).To(Equal(string(issued.ChainPEM)))
			s.Close()
		}
		opensslVerify(mustRead(m.CertPath()), ackRoots())
	}, SpecTimeout(5*time.Minute))
})

func mustRead(path string) []byte {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return data
}

var _ = Describe("ACK external mode (the vendor's tool)", Ordered, Label("ack", "sim"), func() {
	var t *bench.Target
	BeforeAll(func() {
		requireSimACK()
		for i := range ackBench.Targets {
			if x := ackBench.Targets[i].ACK; x != nil && x.Mode == bench.ACKModeExternal {
				t = &ackBench.Targets[i]
			}
		}
		if t == nil {
			Skip("no external-mode module on the bench")
		}
	})

	withMode := func(mode string, timeout time.Duration) *bench.Target {
		c := *t
		a := *t.ACK
		x := *a.External
		x.Command = append(append([]string{}, x.Command...), "--mode", mode)
		if timeout > 0 {
			x.Timeout = timeout
		}
		a.External = &x
		c.ACK = &a
		return &c
	}

	It("does not trust a tool that exits 0 after printing a failure", func(ctx SpecContext) {
		d := openModule(ctx, withMode("lie", 0))
		_, err := d.Provision(ctx, ackStation.Issuer, device.Options{})
		Expect(err).To(MatchError(ack.ErrExternalFailed))
		Expect(err.Error()).To(ContainSubstring("ERROR: flash write failed"))
	}, SpecTimeout(time.Minute))

	It("kills a tool that hangs, and says so", func(ctx SpecContext) {
		d := openModule(ctx, withMode("hang", time.Second))
		start := time.Now()
		_, err := d.Provision(ctx, ackStation.Issuer, device.Options{})
		Expect(err).To(MatchError(ack.ErrExternalFailed))
		Expect(err.Error()).To(ContainSubstring("killed"))
		Expect(time.Since(start)).To(BeNumerically("<", 30*time.Second), "hang guard")
	}, SpecTimeout(time.Minute))

	It("runs the tool, then reads the identity back natively and verifies it, leaving the ledger alone", func(ctx SpecContext) {
		d := openModule(ctx, t)
		Expect(d).To(BeAssignableToTypeOf(&ack.ExternalSession{}))
		c := &countingIssuer{Issuer: ackStation.Issuer}
		res, err := d.Provision(ctx, c, device.Options{})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Facts).To(HaveKeyWithValue("provisioned_by", "vendor tool"))
		Expect(res.Issued.CSR).To(BeNil(), "nothing was issued by the station")
		Expect(c.issued.Load()).To(BeZero())
		dsn, err := d.(device.Identifier).DeviceID(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Issued.Certificate.Subject.CommonName).To(Equal(dsn))
		known, err := ackStation.Issuer.Lookup(ctx, res.Issued.Certificate.PublicKey)
		Expect(err).NotTo(HaveOccurred())
		Expect(known).To(BeNil(), "the vendor tool's chain is not in the ledger")
		opensslVerify(res.Issued.ChainPEM, ackRoots())
	}, SpecTimeout(2*time.Minute))
})

var _ = Describe("ACK bad input", Label("ack", "sim"), func() {
	BeforeEach(func() { requireSimACK() })

	It("stops at a module that speaks another dialect version, signing nothing", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		m, err := acksim.Start(acksim.Config{Name: "ha2", Dir: filepath.Join(dir, "ha2"), Dialect: "HA2", BootDelay: 10 * time.Millisecond})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(m.Close)
		t := &bench.Target{Name: "ha2", Family: bench.FamilyACK, Console: bench.Console{Port: m.PortPath(), Baud: 115200}}
		d := openModule(ctx, t)
		c := &countingIssuer{Issuer: ackStation.Issuer}
		_, err = d.Provision(ctx, c, device.Options{})
		Expect(err).To(MatchError(ack.ErrWrongDialect))
		Expect(err.Error()).To(And(ContainSubstring("HA2"), ContainSubstring("HA1")))
		Expect(c.issued.Load()).To(BeZero())
	}, SpecTimeout(time.Minute))

	It("signs nothing for a CSR that breaks the profile, and uploads nothing", func(ctx SpecContext) {
		t := ackTarget(1)
		m, err := simACK.Module(t.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.SetFault("bad_csr_curve", true)).To(Succeed())
		DeferCleanup(m.SetFault, "bad_csr_curve", false)
		commits := m.Stats().Commits
		d := openModule(ctx, t)
		c := &countingIssuer{Issuer: ackStation.Issuer}
		_, err = d.Provision(ctx, c, device.Options{Reprovision: true})
		Expect(err).To(MatchError(pki.ErrCSRRejected))
		Expect(c.issued.Load()).To(BeZero())
		Expect(m.Stats().Commits).To(Equal(commits), "nothing committed")
	}, SpecTimeout(time.Minute))
})

package specs

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"hilbench/harness/bench"
	"hilbench/harness/device"
	"hilbench/harness/flash"
	"hilbench/harness/power"
	"hilbench/targets/acs"
	"hilbench/targets/acs/sim"
)

// flashImage writes a simulator firmware image of the given version and payload size.
func flashImage(version string, size int) *flash.Image {
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	path := filepath.Join(GinkgoT().TempDir(), version+".bin")
	Expect(os.WriteFile(path, sim.BuildImage(version, payload), 0o644)).To(Succeed())
	img, err := flash.Load(path, "")
	Expect(err).NotTo(HaveOccurred())
	return img
}

var versionSeq atomic.Int32

func nextVersion() string {
	return fmt.Sprintf("acs-sim-2.%d.%d", GinkgoParallelProcess(), versionSeq.Add(1))
}

var _ = Describe("Firmware update over the console (YMODEM)", Ordered, Label("flash", "acs"), func() {
	var (
		t   *bench.Target
		s   *acs.Session
		cfg acs.FlashConfig // the bench's flash section, as the driver mapped it at open
	)
	BeforeAll(func(ctx SpecContext) {
		requireSim()
		t = targetFor(2) // a device of its own: flashing reprovisions it
		if t.Flash == nil {
			Skip("target has no flash section")
		}
		s = openTarget(ctx, 2)
		var err error
		cfg, err = s.FlashConfig()
		Expect(err).NotTo(HaveOccurred())
	})

	It("flashes an image, boots it, and the firmware reports the image's version", func(ctx SpecContext) {
		v := nextVersion()
		img := flashImage(v, 200<<10)
		// As `hil flash` does it: the device is a Flasher with the bench's flash section.
		var f device.Flasher = s
		res, err := f.Flash(ctx, img, device.FlashOptions{ExpectVersion: v})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Version).To(Equal(v))
		Expect(res.Digest).To(Equal(fmt.Sprintf("%x", img.SHA256)))
		d, err := simulated.Device(t.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.RunningVersion()).To(Equal(v))
		AddReportEntry("ymodem throughput (B/s)", res.Facts["ymodem_bytes_per_s"])
	}, SpecTimeout(2*time.Minute))

	It("keeps the DHA identity across a firmware update", func(ctx SpecContext) {
		res, err := s.Provision(ctx, theStation.Issuer, device.Options{Reprovision: true})
		Expect(err).NotTo(HaveOccurred())
		issued := res.Issued
		v := nextVersion()
		_, err = s.FlashWith(ctx, flashImage(v, 64<<10), cfg, device.FlashOptions{ExpectVersion: v})
		Expect(err).NotTo(HaveOccurred())
		got, err := s.ReadChainPEM(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal(string(issued.ChainPEM)))
		Expect(s.Verify(ctx, issued, theStation.Issuer.Roots(), time.Now())).To(Succeed())
	}, SpecTimeout(2*time.Minute))

	It("boots the previous firmware after a power cut mid-flash, and can be flashed again", func(ctx SpecContext) {
		d, err := simulated.Device(t.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Sync(ctx)).To(Succeed()) // booted: the running version is known
		before := d.RunningVersion()
		Expect(before).NotTo(BeEmpty())
		pw, err := power.ForTarget(t)
		Expect(err).NotTo(HaveOccurred())
		v := nextVersion()
		img := flashImage(v, 300<<10)
		var cut atomic.Bool
		short := cfg
		short.Attempts = 1
		short.Timeout = 2 * time.Second             // reaching the bootloader takes ~0.2 s on the simulator
		short.BlockTimeout = 250 * time.Millisecond // the device is off: how long it takes to give up is not under test
		_, err = s.FlashWith(ctx, img, short, device.FlashOptions{Transfer: func(sent, total int64) {
			if sent > total/3 && cut.CompareAndSwap(false, true) {
				go func() { _ = pw.Off(context.Background()) }()
			}
		}})
		Expect(err).To(HaveOccurred(), "a flash cut by a power loss is never a success")
		Expect(cut.Load()).To(BeTrue())
		Expect(pw.On(ctx)).To(Succeed())
		Expect(s.Sync(ctx)).To(Succeed())
		Expect(d.RunningVersion()).To(Equal(before), "the previous slot boots")
		res, err := s.FlashWith(ctx, img, cfg, device.FlashOptions{ExpectVersion: v})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Version).To(Equal(v))
	}, SpecTimeout(3*time.Minute))

	It("retries an interrupted YMODEM transfer and completes it", func(ctx SpecContext) {
		d, err := simulated.Device(t.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.SetFault(sim.FaultLoadyAbort, true)).To(Succeed())
		v := nextVersion()
		res, err := s.FlashWith(ctx, flashImage(v, 100<<10), cfg, device.FlashOptions{ExpectVersion: v})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Attempts).To(Equal(2))
		Expect(d.FaultOn(sim.FaultLoadyAbort)).To(BeFalse())
	}, SpecTimeout(2*time.Minute))

	It("flashes through noise on the line", func(ctx SpecContext) {
		d, err := simulated.Device(t.Name)
		Expect(err).NotTo(HaveOccurred())
		v := nextVersion()
		img := flashImage(v, 200<<10)
		// Noise on the device's answers while data blocks flow, and only then: a garbled ACK
		// costs a resend. The bootloader's text around the transfer (its ready line, digest
		// and verdict) stays readable; noise there is a failed transfer, retried, which is
		// another spec's business.
		noisy := cfg
		// A garbled answer costs a resend after the garbage wait; its length is not under test.
		noisy.GarbageWait = 50 * time.Millisecond
		res, err := s.FlashWith(ctx, img, noisy, device.FlashOptions{ExpectVersion: v,
			Transfer: func(sent, total int64) {
				if sent >= total {
					d.SetNoiseRate(0)
				} else {
					// One answer in ten garbled: at 3% a transfer of 200 blocks went through
					// without a single garbled answer now and then (0.97^200 = 0.2%), and the
					// spec asserted nothing.
					d.SetNoiseRate(0.1)
				}
			}})
		d.SetNoiseRate(0)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Transfer.Retransmits + res.Transfer.Noise).To(BeNumerically(">", 0))
		Expect(res.Attempts).To(Equal(1), "resent blocks, not a new transfer, absorb noise on the answers")
	}, SpecTimeout(3*time.Minute))

	It("fails clearly when the device never enters its bootloader", func(ctx SpecContext) {
		d, err := simulated.Device(t.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.SetFault(sim.FaultNoBootloader, true)).To(Succeed())
		DeferCleanup(d.SetFault, sim.FaultNoBootloader, false)
		short := cfg
		short.Timeout = 2 * time.Second // runs out: the bootloader prompt never comes (its checks before need a second or so on a loaded machine)
		_, err = s.FlashWith(ctx, flashImage(nextVersion(), 4<<10), short, device.FlashOptions{})
		Expect(err).To(MatchError(ContainSubstring("never showed its bootloader prompt")))
		Expect(d.SetFault(sim.FaultNoBootloader, false)).To(Succeed())
		Expect(s.Sync(ctx)).To(Succeed())
	}, SpecTimeout(time.Minute))

	It("refuses an image that is corrupt, truncated or too large before touching the device", func() {
		dir := GinkgoT().TempDir()
		hex := filepath.Join(dir, "bad.hex")
		Expect(os.WriteFile(hex, []byte(":10000000000102030405060708090A0B0C0D0E0F00\n:00000001FF\n"), 0o644)).To(Succeed())
		_, err := flash.Load(hex, "")
		Expect(err).To(MatchError(ContainSubstring("line 1")))
		truncated := filepath.Join(dir, "cut.hex")
		Expect(os.WriteFile(truncated, []byte(":0400000001020304F2\n"), 0o644)).To(Succeed())
		_, err = flash.Load(truncated, "")
		Expect(err).To(HaveOccurred())
		dfu := filepath.Join(dir, "bad.dfu")
		Expect(os.WriteFile(dfu, flash.AppendDFUSuffix([]byte("firmware"), 0x0483, 0xdf11, 0)[:20], 0o644)).To(Succeed())
		_, err = flash.Load(dfu, "")
		Expect(err).To(HaveOccurred())
		big := flashImage("too-big", 64<<10)
		Expect(big.CheckFits(32 << 10)).To(MatchError(ContainSubstring("32768")))
	})
})

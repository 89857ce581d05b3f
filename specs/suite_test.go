// The hilbench specs. With no arguments they run against a simulated bench each Ginkgo process
// starts for itself; `ginkgo ./specs -- --bench FILE` runs the same specs on real boards.
package specs

import (
	"context"
	"crypto"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/reporters"
	. "github.com/onsi/gomega"

	"hilbench/harness/bench"
	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/issue"
	"hilbench/harness/ledger"
	"hilbench/harness/pki"
	"hilbench/harness/signer/agent"
	"hilbench/harness/signer/audit"
	"hilbench/harness/station"
	"hilbench/targets"
	"hilbench/targets/simbench"
)

var (
	benchFile   = flag.String("bench", "", "bench file of real hardware (default: a simulated bench started by the suite)")
	destructive = flag.Bool("destructive", false, "on hardware, also run specs that change a device's identity or wipe its data")
	outDir      = flag.String("out", "", "output directory for reports and transcripts (default: ../hil-out/specs)")
	simDevices  = flag.Int("sim-devices", 3, "simulated devices each Ginkgo process starts")
	signerKind  = flag.String("signer", "softdak", "on the simulated bench, sign with: softdak (PEM files) or yubikey (a virtual YubiKey through pcscd)")
	vpcdSlot    = flag.String("vpcd", "127.0.0.1:35963", "vpcd slot for the virtual YubiKey (--signer yubikey)")
	ackBenchArg = flag.String("ack-bench", "", "bench file of real ACK modules (default: a simulated one when --bench is not given)")
	simModules  = flag.Int("sim-modules", 3, "simulated ACK modules (native mode) each Ginkgo process starts")
)

// The bench this process works on.
var (
	theBench   *bench.Bench
	simulated  *simbench.Bench // nil on hardware
	theStation *station.Station
	runOut     string

	ackBench   *bench.Bench       // nil: no ACK modules to test
	simACK     *simbench.ACKBench // nil on hardware
	ackStation *station.Station
)

func TestSpecs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "hilbench specs")
}

// With --signer yubikey, process 1 plugs in a virtual YubiKey and serves its DAK with a signing
// agent, as a factory line's one key serves many station slots; every process signs through the
// agent's socket. Its data for the others: the socket and the trust anchor.
var _ = SynchronizedBeforeSuite(func() []byte {
	if *benchFile != "" || *signerKind != "yubikey" {
		return nil
	}
	dir, err := os.MkdirTemp("", "hil-specs-yk-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	yk, err := simbench.StartVirtualYubiKey(ctx, filepath.Join(dir, "card"), filepath.Join(dir, "dak"), *vpcdSlot)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(yk.Close)

	// The serving side: the key, the profile, the issuance pipeline (a ledger with the budget,
	// an audit log), a socket.
	b := &bench.Bench{Signer: yk.Signer, Profile: bench.ProfileConfig{}, Output: filepath.Join(dir, "out")}
	b.Signer.StateDir = filepath.Join(dir, "state")
	Expect(os.MkdirAll(b.Signer.StateDir, 0o700)).To(Succeed())
	dak, err := station.OpenSigner(ctx, b, time.Now())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(dak.(io.Closer).Close)
	roots, err := station.Roots(b)
	Expect(err).NotTo(HaveOccurred())
	profile, err := pki.LoadProfile(filepath.Join("..", "fixtures", "profiles", "device.conf"), pki.ProfileOptions{})
	Expect(err).NotTo(HaveOccurred())
	lg, err := ledger.OpenSQLite(filepath.Join(b.Signer.StateDir, "ledger.db"))
	Expect(err).NotTo(HaveOccurred())
	auditLog, err := audit.Open(filepath.Join(b.Signer.StateDir, "audit.jsonl"))
	Expect(err).NotTo(HaveOccurred())
	// A bench provisions one product: the ACK modules' product profile gets its own agent on the
	// same key, ledger and audit log.
	ackProfile, err := pki.LoadProfile(filepath.Join("..", "fixtures", "profiles", "ack-product.conf"), pki.ProfileOptions{PerDeviceFields: []string{"CN"}})
	Expect(err).NotTo(HaveOccurred())
	socket := filepath.Join(dir, "agent.sock")
	ackSocket := filepath.Join(dir, "agent-ack.sock")
	srvCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 2)
	chain := dak.Chain()
	for _, a := range []struct {
		profile *pki.Profile
		socket  string
	}{{profile, socket}, {ackProfile, ackSocket}} {
		ready := make(chan struct{})
		p := &issue.Pipeline{
			Certs:  &pki.Issuer{Profile: a.profile, Signer: dak, CA: chain[0], Intermediates: chain[1:], Validity: station.Validity(b)},
			Ledger: lg, Audit: auditLog, TrustAnchors: roots, Station: "specs",
		}
		srv := &agent.Server{Pipeline: p,
			Logf: func(f string, a ...any) { GinkgoWriter.Printf("agent: "+f+"\n", a...) }, OnReady: func(string) { close(ready) }}
		go func() { done <- srv.Serve(srvCtx, a.socket) }()
		Eventually(ready).WithTimeout(10 * time.Second).Should(BeClosed())
	}
	DeferCleanup(func() {
		stop()
		Expect(<-done).To(Succeed())
		Expect(<-done).To(Succeed())
		lg.Close()
		auditLog.Close()
	})
	return []byte(socket + "\n" + yk.Signer.Roots[0] + "\n" + ackSocket)
}, func(agentData []byte) {
	if *outDir == "" {
		*outDir = filepath.Join("..", "hil-out", "specs")
	}
	runOut = filepath.Join(*outDir, fmt.Sprintf("process-%d", GinkgoParallelProcess()))
	Expect(os.MkdirAll(runOut, 0o755)).To(Succeed())

	var err error
	if *benchFile != "" {
		theBench, err = bench.Load(*benchFile)
		Expect(err).NotTo(HaveOccurred())
	} else {
		simulated, err = simbench.Start(GinkgoT().TempDir(), simbench.Options{Devices: *simDevices, BootDelay: 200 * time.Millisecond})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(simulated.Close)
		theBench = simulated.Bench
		switch *signerKind {
		case "softdak":
		case "yubikey":
			// agentData: ACS agent socket, trust anchor, ACK agent socket (one per line).
			parts := strings.Split(string(agentData), "\n")
			theBench.Signer = bench.SignerConfig{Type: bench.SignerAgent, Socket: parts[0], Roots: []string{parts[1]}}
		default:
			Fail(fmt.Sprintf("--signer %q: want softdak or yubikey", *signerKind))
		}
	}
	switch {
	case *ackBenchArg != "":
		ackBench, err = bench.Load(*ackBenchArg)
		Expect(err).NotTo(HaveOccurred())
	case *benchFile == "":
		simACK, err = simbench.StartACK(GinkgoT().TempDir(), simbench.ACKOptions{Modules: *simModules, External: 1,
			// A modelled line rate (the driver's timeouts follow it), fast enough that the specs'
			// dozens of provisionings do not wait on it: 115200 baud is the benchmarks' business.
			Baud: 921600, BootDelay: 50 * time.Millisecond,
			// A module cut dark mid-COMMIT is found silent after three unanswered sends of the
			// slow timeout: its production value (10 s) is not under test. The simulated
			// module's slowest work (a certificate write at flash speed) takes ~30 ms.
			SlowTimeout: time.Second})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(simACK.Close)
		ackBench = simACK.Bench
		if *signerKind == "yubikey" {
			parts := strings.Split(string(agentData), "\n")
			// The stand-in vendor tool signs with the development DAK: its root stays trusted.
			ackBench.Signer = bench.SignerConfig{Type: bench.SignerAgent, Socket: parts[2],
				Roots: append([]string{parts[1]}, ackBench.Signer.Roots...)}
		}
	}
	if ackBench != nil {
		ackStation, err = station.Open(context.Background(), ackBench, time.Now())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(ackStation.Close)
	}
	theStation, err = station.Open(context.Background(), theBench, time.Now())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(theStation.Close)
	GinkgoWriter.Printf("signing with %s\n", theStation.Description())
})

// JUnit and JSON reports land in the output directory however the suite was started.
var _ = ReportAfterSuite("reports", func(r Report) {
	dir := *outDir
	if dir == "" {
		dir = filepath.Join("..", "hil-out", "specs")
	}
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	Expect(reporters.GenerateJUnitReport(r, filepath.Join(dir, "junit.xml"))).To(Succeed())
	Expect(reporters.GenerateJSONReport(r, filepath.Join(dir, "report.json"))).To(Succeed())
})

// requireSim skips specs that need the simulator's hooks.
func requireSim() {
	if simulated == nil {
		Skip("needs the simulated bench (fault injection)")
	}
}

// requireDestructive skips, on hardware, specs that change identities or wipe data unless asked.
func requireDestructive() {
	if simulated == nil && !*destructive {
		Skip("changes the device's identity or data: pass --destructive to run it on hardware")
	}
}

// targetFor picks the n-th target of this process: on a simulated bench every process has its own
// devices; on hardware, targets are dealt out across parallel processes.
func targetFor(n int) *bench.Target {
	idx := n
	if simulated == nil {
		suite, _ := GinkgoConfiguration()
		idx = GinkgoParallelProcess() - 1 + n*suite.ParallelTotal
	}
	if idx >= len(theBench.Targets) {
		Skip(fmt.Sprintf("the bench has no target #%d for process %d", idx+1, GinkgoParallelProcess()))
	}
	return &theBench.Targets[idx]
}

// openDevice opens a bench target the way the CLI does (targets.Open: no family branches), its
// transcript in this process's output directory, and closes it when the spec ends.
func openDevice(ctx context.Context, b *bench.Bench, t *bench.Target) device.Device {
	GinkgoHelper()
	env := targets.Env{Dir: runOut, Redactor: console.NewRedactor()}
	if b.Profile.DeviceConf != "" {
		p, err := station.LoadProfile(b)
		Expect(err).NotTo(HaveOccurred())
		env.Profile = p
	}
	d, err := targets.Open(ctx, t, env)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(d.Close)
	return d
}

// countingIssuer counts the chains an Issuer hands out. forget makes it a ledger that knows
// nothing (another station's): every chain a device holds is unknown to it.
type countingIssuer struct {
	device.Issuer
	forget bool
	issued atomic.Int32
}

func (c *countingIssuer) Issue(ctx context.Context, req device.IssueRequest) (*pki.Issued, error) {
	is, err := c.Issuer.Issue(ctx, req)
	if err == nil {
		c.issued.Add(1)
	}
	return is, err
}

func (c *countingIssuer) Lookup(ctx context.Context, pub crypto.PublicKey) (*device.Known, error) {
	if c.forget {
		return nil, nil
	}
	return c.Issuer.Lookup(ctx, pub)
}

// ledgerHolds says whether iss records exactly this chain for its leaf's key (false with an
// Issuer that keeps no ledger).
func ledgerHolds(ctx context.Context, iss device.Issuer, chain []*x509.Certificate) bool {
	GinkgoHelper()
	k, err := iss.Lookup(ctx, chain[0].PublicKey)
	Expect(err).NotTo(HaveOccurred())
	return k.Live() && k.Issued != nil && device.SameChain(k.Issued.Chain, chain)
}

package simbench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"hilbench/fixtures"
	"hilbench/harness/bench"
	"hilbench/harness/signer/softdak"
	acksim "hilbench/targets/ack/sim"
	"hilbench/targets/simpower"
)

// ACKOptions shape a simulated bench of ACK modules.
type ACKOptions struct {
	Modules   int           // native-mode modules mod1..modN (default 1)
	External  int           // more modules, extN, provisioned by the stand-in vendor tool
	Baud      int           // modelled line rate; 0 = unlimited
	BootDelay time.Duration // simulated boot time
	// SlowTimeout, when set, is the modules' ack.slow_timeout: how long KEYGEN, CSR and COMMIT
	// may take before a send counts as unanswered (the simulator answers in milliseconds).
	SlowTimeout time.Duration
	// VendorTool is the script standing in for the vendor's provisioning tool (external mode);
	// default: fixtures/vendor-tool/module-utility, written into Dir.
	VendorTool string
}

// ACKBench is a running simulated bench of ACK modules. Its bench file's profile is the example
// ACK product configuration: a bench provisions one product.
type ACKBench struct {
	Dir       string
	BenchFile string
	Bench     *bench.Bench
	Modules   []*acksim.Module
	power     []*simpower.Server
}

// StartACK starts the modules, serves their power switches and writes Dir/bench.yaml.
func StartACK(dir string, opts ACKOptions) (*ACKBench, error) {
	if opts.Modules <= 0 && opts.External <= 0 {
		opts.Modules = 1
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dakDir := filepath.Join(dir, "dak")
	dakKey := filepath.Join(dakDir, "dak_private_key.pem")
	if _, err := os.Stat(dakKey); errors.Is(err, os.ErrNotExist) {
		if _, err := softdak.InitDevelopment(dakDir, softdak.InitOptions{}); err != nil {
			return nil, fmt.Errorf("making the simulated bench's development DAK: %w", err)
		}
	}
	product := filepath.Join(dir, "ack-product.conf")
	if err := os.WriteFile(product, fixtures.ACKProduct, 0o644); err != nil {
		return nil, err
	}
	pinFile := filepath.Join(dir, "yubikey.pin")
	if err := os.WriteFile(pinFile, []byte("123456\n"), 0o600); err != nil {
		return nil, err
	}
	sb := &ACKBench{Dir: dir, BenchFile: filepath.Join(dir, "bench.yaml")}
	b := &bench.Bench{
		Signer: bench.SignerConfig{
			Type:        "softdak",
			Key:         dakKey,
			Certificate: filepath.Join(dakDir, "dak-certificate.pem"),
			Roots:       []string{filepath.Join(dakDir, "dev-root-ca.pem")},
		},
		Profile: bench.ProfileConfig{DeviceConf: product, PerDeviceFields: []string{"CN"}, ValidityDays: 1825},
		Output:  filepath.Join(dir, "out"),
	}
	baud := opts.Baud
	if baud == 0 {
		baud = 115200
	}
	start := func(name string) (*acksim.Module, error) {
		m, err := acksim.Start(acksim.Config{
			Name: name, Dir: filepath.Join(dir, "modules", name), Baud: opts.Baud, BootDelay: opts.BootDelay,
		})
		if err != nil {
			return nil, fmt.Errorf("starting simulated module %s: %w", name, err)
		}
		sb.Modules = append(sb.Modules, m)
		ps, err := m.ServePower()
		if err != nil {
			return nil, err
		}
		sb.power = append(sb.power, ps)
		return m, nil
	}
	for i := 1; i <= opts.Modules; i++ {
		m, err := start("mod" + strconv.Itoa(i))
		if err != nil {
			sb.Close()
			return nil, err
		}
		b.Targets = append(b.Targets, bench.Target{
			Name: m.Name(), Family: bench.FamilyACK,
			Console: bench.Console{Port: m.PortPath(), Baud: baud},
			Power:   &bench.Power{Type: bench.PowerSim, Socket: filepath.Join(filepath.Dir(m.PortPath()), "power.sock"), OffTime: 100 * time.Millisecond},
			ACK:     &bench.ACKOptions{Mode: bench.ACKModeNative, ProductConfig: product, SlowTimeout: opts.SlowTimeout},
		})
	}
	tool := opts.VendorTool
	if tool == "" {
		tool = filepath.Join(dir, "module-utility")
		if err := os.WriteFile(tool, fixtures.VendorTool, 0o755); err != nil {
			sb.Close()
			return nil, err
		}
	}
	for i := 1; i <= opts.External; i++ {
		m, err := start("ext" + strconv.Itoa(i))
		if err != nil {
			sb.Close()
			return nil, err
		}
		b.Targets = append(b.Targets, bench.Target{
			Name: m.Name(), Family: bench.FamilyACK,
			Console: bench.Console{Port: m.PortPath(), Baud: baud},
			Power:   &bench.Power{Type: bench.PowerSim, Socket: filepath.Join(filepath.Dir(m.PortPath()), "power.sock"), OffTime: 100 * time.Millisecond},
			ACK: &bench.ACKOptions{Mode: bench.ACKModeExternal, ProductConfig: product, External: &bench.ACKExternal{
				// The stand-in signs with the development DAK's PEM files; the real tool uses the
				// YubiKey the PIN file unlocks.
				Command: []string{"bash", tool, "provision", "--port", "{port}", "--baud", strconv.Itoa(baud),
					"--config", "{product_config}", "--pin-file", "{pin_file}",
					"--dak-key", dakKey, "--dak-cert", filepath.Join(dakDir, "dak-certificate.pem")},
				PINFile: pinFile,
				Success: []string{`^PROVISIONED `},
				Failure: []string{`(?i)\berror\b`, `FAILED`},
				Timeout: 2 * time.Minute,
			}},
		})
	}
	sb.Bench = b
	if err := b.Write(sb.BenchFile); err != nil {
		sb.Close()
		return nil, err
	}
	if sb.Bench, err = bench.Load(sb.BenchFile); err != nil {
		sb.Close()
		return nil, fmt.Errorf("the simulated ACK bench file does not load: %w", err)
	}
	return sb, nil
}

// Module returns the simulated module behind a target name.
func (b *ACKBench) Module(name string) (*acksim.Module, error) {
	for _, m := range b.Modules {
		if m.Name() == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no simulated module %q", name)
}

// Close stops every module; their storage stays in Dir.
func (b *ACKBench) Close() error {
	var errs []error
	for _, p := range b.power {
		errs = append(errs, p.Close())
	}
	for _, m := range b.Modules {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

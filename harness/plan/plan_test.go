package plan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExamplePlanLoads(t *testing.T) {
	t.Parallel()
	p, err := Load("../../fixtures/plans/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ph := range p.Phases {
		types = append(types, ph.Type)
	}
	want := "flash provision verify reboot factory_reset power_cycle shell shell"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("phase types %q, want %q", got, want)
	}
	if p.Release != ReleasePowerOff || p.DUTID == nil || p.DUTID.Command != "serial_number" {
		t.Errorf("release %q, dut_id %+v", p.Release, p.DUTID)
	}
	fl := p.Phases[0]
	if fl.Timeout != 5*time.Minute || !filepath.IsAbs(fl.Image) || fl.ExpectVersion != "acs-sim-1.1.0" {
		t.Errorf("flash phase %+v", fl)
	}
	if p.Phases[2].Timeout != time.Minute {
		t.Errorf("verify timeout %s, want the plan's default 1m", p.Phases[2].Timeout)
	}
	m := p.Phases[7].Measurement
	if m == nil || m.Name != "chain_pem_bytes" || *m.Min != 1000 || *m.Max != 8000 || m.Units != "bytes" || !p.Phases[7].ContinueOnFailure || p.Phases[7].Retries != 1 {
		t.Errorf("chain_size phase %+v, measurement %+v", p.Phases[7], m)
	}
	// Every field the parser knows appears in the example or its comments, so it stays the
	// documentation.
	raw, _ := os.ReadFile("../../fixtures/plans/example.yaml")
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(raw), leaf) {
			t.Errorf("example.yaml never mentions %s", k)
		}
	}
}

// TestPlanErrors: each mistake is reported with file, line and field, all at once.
func TestPlanErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error, in order of the lines
		kind       error
	}{
		{"unknown phase", `name: p
phases:
  - type: verify
  - type: burn_in
`, []string{`plan.yaml:4: phases[1].type: unknown phase "burn_in"; phases: flash, provision`}, ErrInvalid},
		{"limit of the wrong type", `name: p
phases:
  - type: shell
    command: uptime
    measurement:
      regexp: '([0-9.]+)'
      min: low
      max: [1]
`, []string{`plan.yaml:7: phases[0].measurement.min: want a number, got "low"`,
			`plan.yaml:8: phases[0].measurement.max: want a single value, got a list`}, ErrType},
		{"unknown field", `name: p
phases:
  - type: verify
    timout: 3s
`, []string{`plan.yaml:4: phases[0].timout: unknown field (did you mean "timeout"?)`}, ErrUnknownField},
		{"field of another phase type", `name: p
phases:
  - type: verify
    image: x.img
`, []string{`plan.yaml:4: phases[0].image: unknown field`}, ErrUnknownField},
		{"missing type and name", `phases:
  - timeout: 3s
`, []string{`plan.yaml:1: name: required`, `plan.yaml:2: phases[0].type: required`}, ErrMissingField},
		{"bad values", `name: p
release: eject
phases:
  - type: provision
    already_provisioned: maybe
    retries: 99
    timeout: soon
  - type: shell
    command: x
    measurement:
      regexp: '(a)(b)'
      equals: 3
      min: 1
`, []string{`plan.yaml:2: release: "eject" is not one of none, power_off`,
			`plan.yaml:5: phases[0].already_provisioned: "maybe" is not one of refuse, reprovision`,
			`plan.yaml:6: phases[0].retries: 99 is out of range`,
			`plan.yaml:7: phases[0].timeout: want a duration`,
			`plan.yaml:11: phases[1].measurement.regexp: 2 capture groups`,
			`plan.yaml:12: phases[1].measurement.equals: give either equals or min/max`}, ErrInvalid},
		{"duplicate phase names", `name: p
phases:
  - type: verify
  - type: verify
`, []string{`plan.yaml:4: phases[1].name: phase name "verify" is used twice (first on line 3)`}, ErrInvalid},
		{"missing image", `name: p
phases:
  - type: flash
    image: nowhere.img
`, []string{`plan.yaml:4: phases[0].image: image `}, ErrInvalid},
		{"syntax", "name: p\nphases: [\n", []string{"plan.yaml:"}, ErrSyntax},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("plan.yaml", t.TempDir(), []byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			lines := strings.Split(msg, "\n")
			if len(lines) != len(c.want) {
				t.Errorf("%d errors, want %d:\n%s", len(lines), len(c.want), msg)
			}
			for i, w := range c.want {
				if i < len(lines) && !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d: %q, want it to start with %q", i, lines[i], w)
				}
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("errors.Is(err, %v) = false: %v", c.kind, err)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "plan.yaml" {
				t.Errorf("errors.As *Error: %+v", pe)
			}
		})
	}
}

func TestMeasurementJudge(t *testing.T) {
	t.Parallel()
	lo, hi, eq := 1.5, 3.0, "v1"
	m := &Measurement{Name: "volts", Min: &lo, Max: &hi, Units: "V"}
	for v, want := range map[string]string{"2": "", "1.5": "", "3": "", "1.4": "below the minimum 1.5 V", "3.01": "above the maximum 3 V", "x": "not a number"} {
		if got := m.Judge(v); want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("Judge(%q) = %q, want %q", v, got, want)
		}
	}
	e := &Measurement{Name: "fw", Equals: &eq}
	if e.Judge("v1") != "" || e.Judge("v2") == "" {
		t.Error("equals")
	}
}

package bench_test

import (
	"errors"
	"strings"
	"testing"

	"hilbench/harness/bench"
)

func TestFactoryKey(t *testing.T) {
	t.Parallel()
	dir := benchDir(t)
	for _, c := range []struct {
		name, yaml string
		want       bench.FactoryConfig
	}{
		{"absent", "", bench.FactoryConfig{}},
		{"full", "factory:\n  device_type: A17XHX23H06INH\n  labels:\n    template: \"ABV:IB01;SERNUM:{serial};PID:ebK3;PUK:{puk};PIN:{pin};\"\n" +
			"    module_size: 5\n    dpi: 600\n  sidewalk: {apid: pd25, stage: test}\n",
			bench.FactoryConfig{DeviceType: "A17XHX23H06INH", Labels: bench.LabelsConfig{Template: "ABV:IB01;SERNUM:{serial};PID:ebK3;PUK:{puk};PIN:{pin};",
				ModuleSize: 5, DPI: 600}, Sidewalk: bench.SidewalkConfig{APID: "pd25", Stage: "test"}}},
		{"defaults left to the commands", "factory:\n  labels: {template: \"PUK:{puk};PIN:{pin}\"}\n  sidewalk: {apid: abCD}\n",
			bench.FactoryConfig{Labels: bench.LabelsConfig{Template: "PUK:{puk};PIN:{pin}"}, Sidewalk: bench.SidewalkConfig{APID: "abCD"}}},
	} {
		b, err := parse(t, dir, head+dut1+c.yaml)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if b.Factory != c.want {
			t.Fatalf("%s: Factory = %+v, want %+v", c.name, b.Factory, c.want)
		}
		data, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := parse(t, dir, string(data))
		if err != nil || back.Factory != b.Factory {
			t.Errorf("%s: round trip %+v, %v; want %+v\n%s", c.name, back.Factory, err, b.Factory, data)
		}
	}
}

func TestFactoryKeyErrors(t *testing.T) {
	t.Parallel()
	dir := benchDir(t)
	for _, c := range []struct{ yaml, field, msg string }{
		{"factory:\n  labels: {template: \"ABV:IB01;PUK:{puk}\"}\n", "factory.labels.template", "{pin}"},
		{"factory:\n  labels: {module_size: 4}\n", "factory.labels", "template"},
		{"factory:\n  labels: {template: \"PUK:{puk};PIN:{pin}\", dpi: 10}\n", "factory.labels.dpi", "out of range"},
		{"factory:\n  sidewalk: {apid: \"pd-25\"}\n", "factory.sidewalk.apid", "letters and digits"},
		{"factory:\n  sidewalk: {apid: pd25, stage: staging}\n", "factory.sidewalk.stage", "production"},
		{"factory:\n  device_type: \"A17 X\"\n", "factory.device_type", "Device Type ID"},
	} {
		_, err := parse(t, dir, head+dut1+c.yaml)
		var errs bench.Errors
		if !errors.As(err, &errs) {
			t.Errorf("%q: %v, want bench errors", c.yaml, err)
			continue
		}
		found := false
		for _, e := range errs {
			if strings.HasPrefix(e.Field, c.field) && strings.Contains(e.Error(), c.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: %v, want an error on %s with %q", c.yaml, err, c.field, c.msg)
		}
	}
}

package run

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"hilbench/harness/console"
	"hilbench/harness/device"
	"hilbench/harness/testrecord"
)

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{failf("measurement out of limits"), testrecord.Fail},
		{device.Fail("dut1", device.StepReadBack, device.ErrChainMismatch), testrecord.Fail},
		{fmt.Errorf("x: %w", device.ErrAlreadyProvisioned), testrecord.Fail},
		{device.Fail("dut1", device.StepIssue, errors.New("budget exhausted")), testrecord.Error},
		{fmt.Errorf("phase timed out: %w", context.DeadlineExceeded), testrecord.Error},
		{fmt.Errorf("sleep: %w", console.ErrNoStatus), testrecord.Error},
	}
	for _, c := range cases {
		if got := outcomeOf(c.err); got != c.want {
			t.Errorf("outcomeOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestCSIStripped(t *testing.T) {
	t.Parallel()
	if got := csi.ReplaceAllString("\x1b[1;1Racs-sim-1.1.0\n", ""); got != "acs-sim-1.1.0\n" {
		t.Errorf("%q", got)
	}
}

package soak

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// SimSocket asks a simulator for faults over its power socket: the socket `hil sim` serves for
// each simulated target (targets/simpower, "fault" requests), named by the target's bench entry
// (power type sim). One request line, one answer line ("ok on|off" or "err <message>").
type SimSocket struct {
	Path    string
	Timeout time.Duration // per request; default 5 s
}

var _ Injector = (*SimSocket)(nil)

// Noise sets the byte error rate of the simulated line.
func (s *SimSocket) Noise(ctx context.Context, rate float64) error {
	return s.request(ctx, "fault noise "+strconv.FormatFloat(rate, 'g', -1, 64))
}

// Cut arms one power cut at byte atByte of phase; the power returns after restore.
func (s *SimSocket) Cut(ctx context.Context, phase string, atByte int, restore time.Duration) error {
	return s.request(ctx, fmt.Sprintf("fault cut %s %d %d", phase, atByte, restore.Milliseconds()))
}

// Reenumerate asks the simulator to hang up its port and come back under a new device node.
func (s *SimSocket) Reenumerate(ctx context.Context) error {
	return s.request(ctx, "fault reenumerate")
}

// Clear disarms a cut and ends the noise.
func (s *SimSocket) Clear(ctx context.Context) error { return s.request(ctx, "fault clear") }

func (s *SimSocket) request(ctx context.Context, line string) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.Path)
	if err != nil {
		return fmt.Errorf("simulator fault socket %s: %w", s.Path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintln(conn, line); err != nil {
		return fmt.Errorf("simulator fault socket %s: %s: %w", s.Path, line, err)
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("simulator fault socket %s: %s: no answer: %w", s.Path, line, err)
	}
	answer = strings.TrimSpace(answer)
	if msg, ok := strings.CutPrefix(answer, "err "); ok {
		return fmt.Errorf("simulator fault socket %s: %s: %s", s.Path, line, msg)
	}
	if !strings.HasPrefix(answer, "ok ") {
		return fmt.Errorf("simulator fault socket %s: %s: unexpected answer %q", s.Path, line, answer)
	}
	return nil
}

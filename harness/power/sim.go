package power

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Sim switches a simulator's power through its socket (targets/simpower): one request line
// (`on`, `off`, `state`, `cycle <ms>`), one answer line (`ok on|off` or `err <message>`).
type Sim struct {
	socket           string
	offTime, timeout time.Duration
}

// NewSim checks cfg (Socket is required).
func NewSim(cfg Config) (*Sim, error) {
	if cfg.Socket == "" {
		return nil, errors.New("power sim: no socket path")
	}
	return &Sim{socket: cfg.Socket, offTime: orDefault(cfg.OffTime, DefaultOffTime),
		timeout: orDefault(cfg.Timeout, DefaultTimeout)}, nil
}

// request sends one line and returns the state the server reports.
func (s *Sim) request(ctx context.Context, line string, extra time.Duration) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout+extra)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.socket)
	if err != nil {
		return Unknown, fmt.Errorf("power sim %s: %w", s.socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := fmt.Fprintln(conn, line); err != nil {
		return Unknown, fmt.Errorf("power sim %s: %s: %w", s.socket, line, err)
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return Unknown, fmt.Errorf("power sim %s: %s: no answer: %w", s.socket, line, err)
	}
	answer = strings.TrimSpace(answer)
	switch {
	case answer == "ok on":
		return On, nil
	case answer == "ok off":
		return Off, nil
	case strings.HasPrefix(answer, "err "):
		return Unknown, fmt.Errorf("power sim %s: %s: %s", s.socket, line, strings.TrimPrefix(answer, "err "))
	}
	return Unknown, fmt.Errorf("power sim %s: %s: unexpected answer %q", s.socket, line, answer)
}

func (s *Sim) expect(ctx context.Context, line string, extra time.Duration, want State) error {
	got, err := s.request(ctx, line, extra)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("power sim %s: %s: switch reports %s", s.socket, line, got)
	}
	return nil
}

// On switches the simulator on.
func (s *Sim) On(ctx context.Context) error { return s.expect(ctx, "on", 0, On) }

// Off switches the simulator off.
func (s *Sim) Off(ctx context.Context) error { return s.expect(ctx, "off", 0, Off) }

// Cycle asks the server to cycle with the configured off time.
func (s *Sim) Cycle(ctx context.Context) error {
	return s.expect(ctx, fmt.Sprintf("cycle %d", s.offTime.Milliseconds()), s.offTime, On)
}

// State asks the switch.
func (s *Sim) State(ctx context.Context) (State, error) { return s.request(ctx, "state", 0) }

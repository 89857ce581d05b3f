package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hilbench/harness/internal/lockfile"
)

// DefaultAddr is where the page is served unless the station is told otherwise.
const DefaultAddr = "127.0.0.1:8080"

// shutdownGrace bounds how long Serve waits for requests in flight once its context ends.
const shutdownGrace = 5 * time.Second

// Listen opens addr for the page. It refuses an address other than loopback when the server
// has no token, a token shorter than MinTokenLen, and a port already taken (naming the process
// holding it when /proc says). The station calls it at start, before any DUT is touched.
func (s *Server) Listen(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("station page address %q: %v (want HOST:PORT, e.g. %s)", addr, err, DefaultAddr)
	}
	if s.opts.Token != "" && len(s.opts.Token) < MinTokenLen {
		return nil, fmt.Errorf("station page token is %d characters long, at least %d", len(s.opts.Token), MinTokenLen)
	}
	if !loopbackHost(host) && s.opts.Token == "" {
		return nil, fmt.Errorf("station page address %q is not loopback: serving it on a network needs a token", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			if holder := portHolder(port); holder != "" {
				return nil, fmt.Errorf("station page address %s is in use by %s", addr, holder)
			}
			return nil, fmt.Errorf("station page address %s is in use (by another station?)", addr)
		}
		return nil, fmt.Errorf("station page: %w", err)
	}
	return ln, nil
}

// Serve serves the page on addr until ctx ends (see Listen for the addresses it refuses).
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := s.Listen(addr)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves the page on ln until ctx ends, then closes ln. Event streams end with
// ctx; other requests in flight get a few seconds to finish.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // request bodies are small; event streams set their own write deadlines
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          nil,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("station page: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("station page: %w", err)
	}
	return nil
}

// portHolder names the process listening on TCP port (decimal) from /proc, or "" when it
// cannot tell (another user's process, not Linux). Only the program and its first argument are
// named: a command line may carry a token.
func portHolder(port string) string {
	p, err := strconv.Atoi(port)
	if err != nil {
		return ""
	}
	want := fmt.Sprintf(":%04X", p)
	var inodes []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) >= 10 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" { // 0A: LISTEN
				inodes = append(inodes, "socket:["+fields[9]+"]")
			}
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil {
			continue
		}
		for _, in := range inodes {
			if link != in {
				continue
			}
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			cmd := strings.Fields(lockfile.Command(pid))
			if len(cmd) > 2 {
				cmd = cmd[:2]
			}
			return fmt.Sprintf("pid %d (%s)", pid, strings.Join(cmd, " "))
		}
	}
	return ""
}

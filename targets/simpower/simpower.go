// Package simpower serves a simulated device's power switch on a Unix socket, so that another
// process (`hil power`, the harness's sim power backend) can cut and restore it as a relay board
// would. It is the simulators' side only; harness/power holds the client.
//
// Protocol (one request per line, one answer per line):
//
//	on | off | state | cycle <milliseconds off> | fault ... (faults.go)
//	-> "ok on" | "ok off" | "err <message>"
package simpower

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Switch is what a simulator exposes: its power.
type Switch interface {
	PowerOn() error
	PowerOff() error
	Powered() bool
}

// MaxCycleOff bounds the off time of a cycle request.
const MaxCycleOff = time.Minute

// Server answers power requests for one device.
type Server struct {
	ln   net.Listener
	sw   Switch
	path string
	wg   sync.WaitGroup
	mu   sync.Mutex // one request at a time: a cycle is not interleaved with an on
}

// Serve listens on path (mode 0600; a stale socket file is replaced) and serves sw until Close.
func Serve(path string, sw Switch) (*Server, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("power socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("power socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("power socket %s: %w", path, err)
	}
	s := &Server{ln: ln, sw: sw, path: path}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintln(c, s.handle(sc.Text())); err != nil {
					return
				}
			}
		}()
	}
}

func (s *Server) handle(line string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := strings.Fields(line)
	if len(f) == 0 {
		return "err empty request"
	}
	var err error
	switch f[0] {
	case "on":
		err = s.sw.PowerOn()
	case "off":
		err = s.sw.PowerOff()
	case "state":
	case "fault": // faults.go
		err = s.fault(f[1:])
	case "cycle":
		off := time.Second
		if len(f) > 1 {
			ms, perr := strconv.Atoi(f[1])
			if perr != nil || ms < 0 || time.Duration(ms)*time.Millisecond > MaxCycleOff {
				return fmt.Sprintf("err cycle: off time %q is not 0..%d milliseconds", f[1], MaxCycleOff.Milliseconds())
			}
			off = time.Duration(ms) * time.Millisecond
		}
		if err = s.sw.PowerOff(); err == nil {
			time.Sleep(off)
			err = s.sw.PowerOn()
		}
	default:
		return fmt.Sprintf("err unknown request %q (want on, off, cycle <ms>, state)", f[0])
	}
	if err != nil {
		return "err " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	if s.sw.Powered() {
		return "ok on"
	}
	return "ok off"
}

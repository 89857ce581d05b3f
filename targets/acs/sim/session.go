package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"hilbench/targets/simline"
)

// session is one run of the device's console shell: a busybox sh on pty B,
// in its own session so that everything it starts can be found and killed.
type session struct {
	cmd  *exec.Cmd
	pid  int      // shell pid = session id
	bm   *os.File // master of pty B
	fifo *os.File // read end of the control FIFO
	gen  uint64   // power generation the session belongs to

	exited  chan struct{} // closed when the shell has been reaped
	outDone chan struct{} // closed when pumpOut has stopped
	outStop chan struct{} // closed by endSession: pumpOut sends nothing more
	ctlDone chan struct{} // closed when readCtl has stopped
	quit    chan struct{} // closed by endSession
}

// ctlMsg is a request a firmware script wrote to the control FIFO.
type ctlMsg struct {
	s      *session
	action string
}

// startSession starts the console shell. The caller holds no locks.
func (d *Device) startSession(gen uint64) (*session, error) {
	ps1 := d.cfg.Prompt
	if d.faultOn(FaultNoPrompt) {
		ps1 = ""
	}
	// A fresh FIFO per session: bytes a dead session left in the old one
	// cannot reach the new one.
	if err := os.Remove(d.l.ctl); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing old control FIFO: %w", err)
	}
	if err := unix.Mkfifo(d.l.ctl, 0o600); err != nil {
		return nil, fmt.Errorf("creating control FIFO: %w", err)
	}
	// O_RDWR: never blocks on open and never sees EOF when writers go away.
	fifo, err := os.OpenFile(d.l.ctl, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening control FIFO: %w", err)
	}

	cmd := exec.Command(d.cfg.Busybox, "sh", "-i")
	cmd.Dir = d.l.home
	cmd.Env = []string{
		"PATH=" + d.l.bin,
		"PS1=" + ps1,
		"HOME=" + d.l.home,
		"TMPDIR=" + d.l.tmp,
		"TERM=vt102",
		"USER=root",
		"LOGNAME=root",
		"SHELL=/bin/sh",
	}
	// Setsid+Setctty: pty B becomes the shell's controlling terminal, so job
	// control, ^C and hangups behave as on a serial console.
	bm, err := pty.StartWithAttrs(cmd, nil, &syscall.SysProcAttr{Setsid: true, Setctty: true})
	if err != nil {
		fifo.Close()
		return nil, fmt.Errorf("starting shell %s: %w", d.cfg.Busybox, err)
	}
	if bm, err = simline.Pollable(bm); err != nil {
		killSession(cmd.Process.Pid)
		_ = cmd.Wait()
		fifo.Close()
		return nil, err
	}
	s := &session{
		cmd: cmd, pid: cmd.Process.Pid, bm: bm, fifo: fifo, gen: gen,
		exited:  make(chan struct{}),
		outDone: make(chan struct{}),
		outStop: make(chan struct{}),
		ctlDone: make(chan struct{}),
		quit:    make(chan struct{}),
	}
	d.wg.Add(3)
	go func() {
		defer d.wg.Done()
		_ = cmd.Wait() // the exit status means nothing: init just respawns
		close(s.exited)
	}()
	go d.pumpOut(s)
	go d.readCtl(s)
	return s, nil
}

// pumpOut carries the shell's console output to the harness. A reader of its own takes the
// output as the shell writes it (a UART driver's buffer), so the shell's prompt is seen when the
// shell printed it (busyClock) while the sending keeps the line's pace.
func (d *Device) pumpOut(s *session) {
	defer d.wg.Done()
	defer close(s.outDone)
	out := make(chan []byte, 16) // full: the shell's writes block, as on a full tty buffer
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(out)
		var tail []byte
		for {
			buf := make([]byte, 4096)
			n, err := s.bm.Read(buf)
			if n > 0 {
				if promptSeen(&tail, buf[:n]) {
					d.busy.prompt()
				}
				out <- buf[:n]
			}
			if err != nil {
				return // EIO once every process of the session has closed pty B
			}
		}
	}()
	for p := range out {
		select {
		case <-s.outStop:
			continue // drop the rest; the reader ends with pty B
		default:
		}
		d.send(p, s.gen)
	}
}

// readCtl forwards control requests of this session to the supervisor.
func (d *Device) readCtl(s *session) {
	defer d.wg.Done()
	defer close(s.ctlDone)
	sc := bufio.NewScanner(s.fifo)
	for sc.Scan() {
		select {
		case d.ctl <- ctlMsg{s: s, action: sc.Text()}:
		case <-s.quit:
			return
		}
	}
}

// endSession kills every process of the session and releases its files.
// drain lets output the shell already produced reach the line first, for up
// to drainGrace (a reboot); without it (power cut) the caller has already
// bumped the generation so that nothing more is sent.
func (d *Device) endSession(s *session, drain bool) {
	d.mu.Lock()
	if d.sess == s {
		d.sess = nil
	}
	d.mu.Unlock()
	close(s.quit)
	killSession(s.pid)
	<-s.exited
	if drain {
		t := time.NewTimer(drainGrace)
		select {
		case <-s.outDone:
		case <-t.C:
		}
		t.Stop()
	}
	// Closing the master also ends pumpOut if a process escaped the kill
	// and still holds pty B open.
	close(s.outStop)
	s.bm.Close()
	<-s.outDone
	d.busy.stop()
	s.fifo.Close()
	<-s.ctlDone
}

// drainGrace bounds how long a reboot waits for output already produced.
const drainGrace = time.Second

// killSession SIGKILLs every live process whose session id is sid, until none
// is left. Scanning /proc catches background jobs in other process groups,
// which killing one process group would miss.
func killSession(sid int) {
	for i := 0; i < 200; i++ {
		pids := sessionMembers(sid)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(time.Duration(min(i+1, 10)) * time.Millisecond)
	}
}

// sessionMembers lists the live (not zombie) processes of session sid.
func sessionMembers(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if ok && st.session == sid && st.state != 'Z' && st.state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

type procStat struct {
	state   byte
	session int
	rssKiB  int64
}

// readStat parses /proc/PID/stat (proc(5)): "pid (comm) state ppid pgrp
// session ... rss(24th)". comm may hold spaces and parentheses, so fields
// are counted from the last ')'.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0]=state(3) f[1]=ppid f[2]=pgrp f[3]=session ... f[21]=rss(24)
	if len(f) < 22 || len(f[0]) != 1 {
		return procStat{}, false
	}
	sess, err := strconv.Atoi(string(f[3]))
	if err != nil {
		return procStat{}, false
	}
	rss, _ := strconv.ParseInt(string(f[21]), 10, 64)
	return procStat{state: f[0][0], session: sess, rssKiB: rss * int64(os.Getpagesize()) / 1024}, true
}

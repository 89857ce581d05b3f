// Package pgtest runs a throwaway PostgreSQL cluster for tests: Debian's initdb and pg_ctl in a
// temporary directory, listening on a free port of 127.0.0.1 and on a socket in that directory,
// with fsync off. One cluster serves a whole test binary; each Start creates a fresh database in
// it.
//
// A test binary that uses it runs the cluster from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and each test asks for a database:
//
//	dsn := pgtest.Start(t) // postgres://hilbench:…@127.0.0.1:PORT/t_N?sslmode=disable
//
// When the PostgreSQL binaries are missing, Start skips the test with a message saying what to
// install; with CI=true in the environment it fails the test instead, so CI never passes by
// skipping. Run as root, the cluster runs as the postgres user (or nobody), since initdb refuses
// root.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser and password of the cluster.
const (
	User     = "hilbench"
	Password = "pgtest-password"
)

// Install is what to install when the binaries are missing.
const Install = "install Debian's postgresql to run the PostgreSQL ledger tests (apt-get install postgresql, or make deps)"

var (
	mu      sync.Mutex
	cl      *cluster
	startEr error
	inMain  atomic.Bool
	dbSeq   atomic.Int64
)

type cluster struct {
	bin  string // directory of initdb, pg_ctl, postgres, psql
	dir  string // temporary directory: data/, sock/, log
	port int
	cred *syscall.Credential // nil: run as ourselves
}

// Main runs the tests and stops the cluster, if one was started, afterwards. Call it from
// TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	inMain.Store(true)
	code := m.Run()
	Stop()
	return code
}

// Stop stops the cluster and removes its directory (Main does this; a TestMain that needs more
// control may call it itself).
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if cl != nil {
		cl.stop()
		cl = nil
	}
}

// Bin returns the path of a PostgreSQL program (psql, pg_dump, ...) from the directory that
// holds initdb, or skips/fails t as Start does when there is none.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir, err := binDir()
	if err != nil {
		missing(t, err)
	}
	return filepath.Join(dir, name)
}

// Start returns the DSN of a new, empty database in the shared cluster, starting the cluster on
// first use.
func Start(t testing.TB) string {
	t.Helper()
	dsn, err := StartDB()
	if err != nil {
		if errors.Is(err, errNoBinaries) {
			missing(t, err)
		}
		t.Fatal(err)
	}
	return dsn
}

// StartDB is Start without a testing.TB: for helpers and benchmarks' setup. It fails with an
// error matching ErrNoBinaries when PostgreSQL is not installed.
func StartDB() (string, error) {
	if !inMain.Load() {
		return "", errors.New("pgtest: the cluster is stopped by pgtest.Main; call it from TestMain: os.Exit(pgtest.Main(m))")
	}
	mu.Lock()
	if cl == nil && startEr == nil {
		cl, startEr = start()
	}
	c, err := cl, startEr
	mu.Unlock()
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.dsn("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connecting to the cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return c.dsn(name), nil
}

// ErrNoBinaries: initdb and pg_ctl were not found.
var ErrNoBinaries = errNoBinaries

var errNoBinaries = errors.New("PostgreSQL binaries not found")

func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v: %s (CI=true: these tests must run)", err, Install)
	}
	t.Skipf("%v: %s", err, Install)
}

func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", User, Password, c.port, db)
}

// binDir finds the directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin,
// else the PATH (where Debian has only wrappers, or another system the programs themselves).
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			d := filepath.Dir(real)
			if executable(filepath.Join(d, "pg_ctl")) {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("%w (looked in /usr/lib/postgresql/*/bin and PATH)", errNoBinaries)
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// stateFile, in a cluster's directory, names the test process that owns it, so a later run can
// stop clusters whose test binary died without stopping them.
const stateFile = "owner.pid"

func start() (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	reapOrphans()
	c := &cluster{bin: bin}
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		u, err := runAs()
		if err != nil {
			return nil, err
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	c.dir, err = os.MkdirTemp(baseDir(c.cred != nil), "hilbench-pgtest-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.dir, stateFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, c.fail(err)
	}
	for _, d := range []string{"data", "sock"} {
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o700); err != nil {
			return nil, c.fail(err)
		}
	}
	pw := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o600); err != nil {
		return nil, c.fail(err)
	}
	if c.cred != nil {
		// The cluster's user must reach its files: the directory is 0700, so owning it is
		// the only way in.
		for _, p := range []string{c.dir, filepath.Join(c.dir, "data"), filepath.Join(c.dir, "sock"), pw} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, c.fail(err)
			}
		}
	}
	if out, err := c.run("initdb", "-D", filepath.Join(c.dir, "data"), "-U", User, "--pwfile", pw,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, c.fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}
	conf := `
fsync = off
synchronous_commit = off
full_page_writes = off
listen_addresses = '127.0.0.1'
unix_socket_directories = '` + filepath.Join(c.dir, "sock") + `'
max_connections = 200
shared_buffers = 32MB
log_min_messages = warning
`
	f, err := os.OpenFile(filepath.Join(c.dir, "data", "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, c.fail(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, c.fail(err)
	}
	// A free port can be taken between our look and the server's bind; try a few.
	for attempt := 0; ; attempt++ {
		c.port, err = freePort()
		if err != nil {
			return nil, c.fail(err)
		}
		out, err := c.run("pg_ctl", "start", "-w", "-t", "60", "-D", filepath.Join(c.dir, "data"),
			"-l", filepath.Join(c.dir, "log"), "-o", "-p "+strconv.Itoa(c.port))
		if err == nil {
			return c, nil
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
			return nil, c.fail(fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log))
		}
	}
}

// fail removes a half-made cluster directory and returns err.
func (c *cluster) fail(err error) error {
	os.RemoveAll(c.dir)
	return fmt.Errorf("pgtest: %w", err)
}

func (c *cluster) stop() {
	c.run("pg_ctl", "stop", "-m", "immediate", "-D", filepath.Join(c.dir, "data"))
	os.RemoveAll(c.dir)
}

// run runs a program from the cluster's bin directory as the cluster's user.
func (c *cluster) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C", "PGTZ=UTC")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// runAs picks the unprivileged user a root test runs the cluster as: Debian's postgres, else
// nobody.
func runAs() (*user.User, error) {
	for _, name := range []string{"postgres", "nobody"} {
		if u, err := user.Lookup(name); err == nil {
			return u, nil
		}
	}
	return nil, errors.New("pgtest: running as root, and neither the postgres nor the nobody user exists to run the cluster as (initdb refuses root)")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// baseDir is where cluster directories go: the temporary directory, unless the cluster runs as
// another user who could not reach into it (a TMPDIR private to root), then /tmp.
func baseDir(otherUser bool) string {
	dir := os.TempDir()
	if !otherUser {
		return dir
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// reapOrphans stops clusters left behind by test processes that died without stopping them:
// a hilbench-pgtest directory whose owner process is gone, and whose postmaster (if it runs)
// is the one serving that directory.
func reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "hilbench-pgtest-*"))
	if os.TempDir() != "/tmp" {
		more, _ := filepath.Glob("/tmp/hilbench-pgtest-*")
		dirs = append(dirs, more...)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, stateFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // its owner lives, or we cannot tell
		}
		data := filepath.Join(d, "data")
		if b, err := os.ReadFile(filepath.Join(data, "postmaster.pid")); err == nil {
			pm, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pm))
			if err == nil && pm > 0 && strings.Contains(string(cmdline), data) {
				syscall.Kill(pm, syscall.SIGQUIT) // immediate shutdown, as pg_ctl stop -m immediate
			}
		}
		os.RemoveAll(d)
	}
}

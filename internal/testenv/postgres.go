package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pgBin is where Debian's postgresql-15 package puts the server binaries.
const pgBin = "/usr/lib/postgresql/15/bin"

var (
	pgOnce   sync.Once
	pgServer *postgresServer
	pgErr    error
	pgSeq    atomic.Int64
)

type postgresServer struct {
	port   int
	socket string // unix socket directory
	cred   *syscall.Credential
}

// Postgres returns the DSN of a fresh, empty database on a real PostgreSQL 15
// server that belongs to this test process. The server is started once per
// process (initdb into a temp dir, listening only on 127.0.0.1 on a free
// port, with its unix socket in that dir) and stops, removing its dir, when
// the test process exits. Each call creates a new database, dropped when t
// ends. A missing PostgreSQL fails the test in CI and skips it elsewhere.
func Postgres(t testing.TB) (dsn string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		missing(t, "PostgreSQL 15 is not installed: run .ci/run once, or apt-get install -y postgresql")
	}
	if _, err := user.Lookup("postgres"); err != nil && os.Geteuid() == 0 {
		missing(t, "the postgres OS user is missing (as root the server runs as it): apt-get install -y postgresql")
	}
	pgOnce.Do(func() { pgServer, pgErr = startPostgres() })
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	name := fmt.Sprintf("sbx_test_%d_%d", os.Getpid(), pgSeq.Add(1))
	// FILE_COPY copies the template's files; with fsync off that beats WAL-logging them.
	if err := pgServer.psql("CREATE DATABASE " + name + " STRATEGY FILE_COPY"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends sessions a test left open; the cluster goes at exit anyway.
		if err := pgServer.psql("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pgServer.port, name)
}

// startPostgres creates a cluster in a temp dir and starts its server as a
// child that dies with this process.
func startPostgres() (*postgresServer, error) {
	dir, err := os.MkdirTemp("", "sbx-pg-")
	if err != nil {
		return nil, err
	}
	s := &postgresServer{socket: dir}
	// initdb refuses to run as root; run the server as the postgres user then.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres OS user (from the postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(pgBin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if s.port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A shell supervises the server: when this process dies (the parent-death
	// signal), it shuts PostgreSQL down fast and removes the cluster's dir.
	// Durability settings are off: test data need not survive a host crash.
	script := `"$@" & pg=$!
trap 'kill -INT $pg' TERM
wait $pg; wait $pg
rm -rf "$SBX_PG_DIR"`
	args := []string{"-c", script, "sbx-postgres",
		filepath.Join(pgBin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "logging_collector=off"}
	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if s.cred != nil {
		os.Chown(logFile.Name(), int(s.cred.Uid), int(s.cred.Gid))
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits, so
		// that thread stays locked to this goroutine for the life of the process.
		runtime.LockOSThread()
		cmd := exec.Command("/bin/sh", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SBX_PG_DIR="+dir)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGTERM, Setpgid: true}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	// Wait until it accepts connections.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := exec.Command(filepath.Join(pgBin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port)).Run()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			return nil, fmt.Errorf("postgres did not accept connections within 60s; its log:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// psql runs one SQL statement as the postgres superuser over the unix socket.
func (s *postgresServer) psql(sql string) error {
	cmd := exec.Command(filepath.Join(pgBin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-h", s.socket, "-p", strconv.Itoa(s.port), "-U", "postgres", "-d", "postgres", "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("psql %q: %v: %s", sql, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("listener has no TCP address")
	}
	return addr.Port, nil
}

package agent_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// These tests play sandbox root, who can write the state dir, against the
// host-side readers and dialer.

// noHang runs f and fails the test if it has not returned within a minute:
// a deadlock guard, not a timing assertion.
func noHang(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s blocked", what)
	}
}

func stateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	return dir
}

func TestReadExitFileFIFO(t *testing.T) {
	dir := stateDir(t)
	if err := syscall.Mkfifo(filepath.Join(dir, agent.ExitFile), 0o644); err != nil {
		t.Fatal(err)
	}
	noHang(t, "ReadExitFile of a FIFO", func() {
		if st, err := agent.ReadExitFile(dir); err == nil || st != nil {
			t.Errorf("ReadExitFile of a FIFO: %+v %v, want an error", st, err)
		}
	})
}

func TestReadExitFileSymlink(t *testing.T) {
	dir := stateDir(t)
	// A host file that would parse as an exit record.
	outside := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(outside, []byte(`{"code":42}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{outside, "/proc/kmsg", "../host-secret"} {
		os.Remove(filepath.Join(dir, agent.ExitFile))
		if err := os.Symlink(target, filepath.Join(dir, agent.ExitFile)); err != nil {
			t.Fatal(err)
		}
		noHang(t, "ReadExitFile of a symlink", func() {
			if st, err := agent.ReadExitFile(dir); err == nil || st != nil {
				t.Errorf("ReadExitFile followed a symlink to %s: %+v %v", target, st, err)
			}
		})
	}
}

func TestReadExitFileTooLarge(t *testing.T) {
	dir := stateDir(t)
	big := `{"code":3,"signal":"` + strings.Repeat("x", 8<<10) + `"}`
	if err := os.WriteFile(filepath.Join(dir, agent.ExitFile), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := agent.ReadExitFile(dir); err == nil || st != nil {
		t.Errorf("ReadExitFile of %d bytes: %+v %v, want an error", len(big), st, err)
	}
	// A regular, small one still reads.
	if err := os.WriteFile(filepath.Join(dir, agent.ExitFile), []byte(`{"code":3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := agent.ReadExitFile(dir); err != nil || st == nil || st.Code != 3 {
		t.Errorf("ReadExitFile: %+v %v", st, err)
	}
}

func TestReadLogsRefusesLinksAndFIFOs(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-hash:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(string) error{
		"symlink":     func(p string) error { return os.Symlink(secret, p) },
		"fifo":        func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"symlinkDir":  func(p string) error { return os.Symlink(filepath.Dir(secret), p) },
		"rotatedLink": nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir := stateDir(t)
			target := filepath.Join(dir, agent.LogFile)
			if plant == nil {
				// The current log is fine; the rotated one is the trap.
				if err := os.WriteFile(target, []byte("ok\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				target += ".1"
				plant = func(p string) error { return os.Symlink(secret, p) }
			}
			if err := plant(target); err != nil {
				t.Fatal(err)
			}
			noHang(t, "ReadLogs", func() {
				s, err := agent.ReadLogs(dir, sandbox.LogOptions{})
				if err != nil {
					return // refused: good
				}
				got := readLogs(t, s)
				if strings.Contains(got, "secret") {
					t.Errorf("ReadLogs followed a %s to a host file: %q", name, got)
				}
				t.Errorf("ReadLogs accepted a %s: %q", name, got)
			})
		})
	}
}

// TestReadLogsBounded: the host reads at most MaxHostLogBytes of a file
// and nothing appended after it opened the file.
func TestReadLogsBounded(t *testing.T) {
	dir := stateDir(t)
	f, err := os.Create(filepath.Join(dir, agent.LogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(agent.MaxHostLogBytes + 10); err != nil { // sparse
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("\nlast\n"), agent.MaxHostLogBytes+10); err != nil {
		t.Fatal(err)
	}
	s, err := agent.ReadLogs(dir, sandbox.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Written after the open: not read.
	if _, err := f.Write([]byte("more\n")); err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, s)
	if len(got) != agent.MaxHostLogBytes || !strings.HasSuffix(got, "\nlast\n") {
		t.Errorf("read %d bytes ending %q; want the last %d", len(got), got[max(len(got)-8, 0):], agent.MaxHostLogBytes)
	}
	s, err = agent.ReadLogs(dir, sandbox.LogOptions{Tail: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLogs(t, s); got != "last\n" {
		t.Errorf("tail 1: %q", got)
	}
}

func anyPeer(int) error { return nil }

// TestDialStateRefusesSymlink: agent.sock replaced by a symlink to a real
// agent's socket (standing for another sandbox's) is not followed, even
// with a verifier that accepts any peer.
func TestDialStateRefusesSymlink(t *testing.T) {
	victim := startAgent(t)
	dir := stateDir(t)
	if err := os.Symlink(filepath.Join(victim.stateDir, agent.SocketName), filepath.Join(dir, agent.SocketName)); err != nil {
		t.Fatal(err)
	}
	c := agent.DialState(dir, anyPeer)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); err == nil {
		t.Fatal("DialState followed a symlink to another agent's socket")
	}
	// Through its own state dir, the same agent answers.
	c2 := agent.DialState(victim.stateDir, func(pid int) error {
		if pid != victim.cmd.Process.Pid {
			return errors.New("wrong peer")
		}
		return nil
	})
	defer c2.Close()
	if err := c2.WaitReady(ctxT(t)); err != nil {
		t.Fatalf("DialState of the real agent: %v", err)
	}
}

// TestDialStateRefusesImpostor: a socket bound in the state dir by another
// process than the agent (here: this test process) is refused by the peer
// check, and nothing is sent to it.
func TestDialStateRefusesImpostor(t *testing.T) {
	a := startAgent(t)
	sock := filepath.Join(a.stateDir, agent.SocketName)
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := c.Read(make([]byte, 64))
		got <- n
	}()
	verify := func(pid int) error {
		if pid != a.cmd.Process.Pid {
			return errors.New("not the agent")
		}
		return nil
	}
	c := agent.DialState(a.stateDir, verify)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = c.WaitReady(ctx)
	if err == nil {
		t.Fatal("DialState trusted a socket bound by another process than the agent")
	}
	if !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("error %v, want Unavailable", err)
	}
	select {
	case n := <-got:
		if n > 0 {
			t.Errorf("the client sent %d bytes to the impostor", n)
		}
	case <-time.After(time.Second):
	}
}

func TestDialStateRefusesNonSocket(t *testing.T) {
	dir := stateDir(t)
	if err := syscall.Mkfifo(filepath.Join(dir, agent.SocketName), 0o600); err != nil {
		t.Fatal(err)
	}
	c := agent.DialState(dir, anyPeer)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	noHang(t, "dial of a FIFO", func() {
		if err := c.WaitReady(ctx); err == nil {
			t.Error("DialState accepted a FIFO")
		}
	})
}

// TestWaitReadyReportsWhy: when the agent never answers because every dial
// is refused, WaitReady's error says why, not that the deadline cut its
// last try (which it does whenever the deadline falls during a dial).
func TestWaitReadyReportsWhy(t *testing.T) {
	a := startAgent(t)
	refuse := func(int) error { return errors.New("refused-by-this-test") }
	for i := range 40 {
		c := agent.DialState(a.stateDir, refuse)
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(5+i%7)*time.Millisecond)
		err := c.WaitReady(ctx)
		cancel()
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "refused-by-this-test") {
			t.Fatalf("try %d: %v; want the refusal named", i, err)
		}
	}
}

package local

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// leaderExitEnv makes the test binary a process whose thread group leader
// exits while another thread lives on for a while, as gVisor's Sentry does
// when the OOM killer ends it: a zombie leader that wait4 cannot reap yet.
const leaderExitEnv = "SBX_TEST_LEADER_EXIT"

func init() {
	if os.Getenv(leaderExitEnv) != "" {
		// Keep the main goroutine on the leader thread, which it then ends.
		runtime.LockOSThread()
	}
}

// leaderExitHelper runs instead of the tests under leaderExitEnv.
func leaderExitHelper() {
	go func() {
		time.Sleep(500 * time.Millisecond)
		os.Exit(7)
	}()
	unix.RawSyscall(unix.SYS_EXIT, 0, 0, 0)
	select {}
}

func testReaper(t *testing.T) (*Runtime, *reaper) {
	t.Helper()
	r, err := startReaper()
	if err != nil {
		t.Fatal(err)
	}
	return &Runtime{reaper: r}, r
}

// waitState polls pid's state until it is want.
func waitState(t *testing.T, pid int, want byte) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		state, start, err := pidStart(pid)
		if err == nil && state == want {
			return start
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: state %c, %v; want %c", pid, state, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A dead PID 1 whose other threads are still exiting is not taken for a
// process that is not ours (which reports a bare SIGKILL): Wait goes on
// until it can be reaped, and then reports how it really ended.
func TestExitedWaitsForZombieLeader(t *testing.T) {
	rt, r := testReaper(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), leaderExitEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	_, start, err := pidStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	r.watch(pid)
	defer r.forget(pid)
	rec := record{ID: "leader", Phase: phaseCreated, PID: pid, PIDStart: start}
	dir := t.TempDir()

	waitState(t, pid, 'Z')
	if st, ok := rt.exited(dir, rec); ok {
		t.Fatalf("a zombie leader with live threads: exited %+v; want not yet", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, ok := rt.exited(dir, rec); ok {
			if st.Code != 7 || st.Signal != "" {
				t.Errorf("exited %+v; want code 7", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper was never reaped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A descendant that is not our child yet when watched (runsc's sandbox
// process, while the runsc command that forked it runs) becomes ours once
// its parent exits: its exit status is kept, not left to the orphan sweep.
func TestReaperKeepsDescendantUntilReparented(t *testing.T) {
	_, r := testReaper(t)
	cmd := exec.Command("/bin/sh", "-c", `(sleep 0.3; exit 5) & echo $!; sleep 0.1`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", buf[:n], err)
	}
	r.watch(pid) // ECHILD: its parent is the shell
	defer r.forget(pid)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, ok := r.exitStatus(pid); ok {
			if st.Code != 5 {
				t.Errorf("grandchild ended %+v; want code 5", st)
			}
			return
		}
		if !r.watching(pid) {
			t.Fatal("the grandchild was dropped before it became our child")
		}
		if time.Now().After(deadline) {
			t.Fatal("the grandchild was never reaped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A watched child that ends after it was watched is reaped by the loop on
// its SIGCHLD (the fast path: it is the zombie waitid names), with its
// status.
func TestReaperReapsWatchedChild(t *testing.T) {
	_, r := testReaper(t)
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2; exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	r.watch(pid)
	defer r.forget(pid)
	waitUntil(t, "the watched child is reaped", func() bool { return !r.watching(pid) })
	st, ok := r.exitStatus(pid)
	if !ok || st.Code != 3 {
		t.Fatalf("exit status %+v, %v; want code 3", st, ok)
	}
}

// An OCI runtime's orphan (a grandchild reparented to us, named like
// crun) is reaped when it ends, though it is watched by no one.
func TestReaperSweepsRuntimeOrphans(t *testing.T) {
	testReaper(t)
	exe := t.TempDir() + "/crun-orphan"
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/sh", "-c", exe+" 0.3 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orphan pid %q: %v", out, err)
	}
	start := waitState(t, pid, 'S')
	waitUntil(t, "the orphan is reaped", func() bool { return !sameProcess(pid, start) })
}

// A child of someone else in this process (os/exec's) is never reaped by
// the reaper, however often it runs: its owner gets its exit status.
func TestReaperLeavesOtherChildren(t *testing.T) {
	_, r := testReaper(t)
	cmd := exec.Command("/bin/sh", "-c", "exit 4")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, cmd.Process.Pid, 'Z')
	for range 3 {
		r.reap()
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Fatalf("Wait: %v; want exit status 4", err)
	}
}

// procStat parses /proc/<pid>/stat of a process whose name holds spaces
// and parentheses, and says a missing pid does not exist.
func TestProcStat(t *testing.T) {
	exe := t.TempDir() + "/a) b (c"
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitState(t, cmd.Process.Pid, 'S')
	state, ppid, start, err := procStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if state != 'S' || ppid != os.Getpid() || strconv.FormatUint(start, 10) != f[19] {
		t.Errorf("procStat = %c, %d, %d; want S, %d, %s (from %q)", state, ppid, start, os.Getpid(), f[19], raw)
	}
	// It runs for every liveness check: building the path (the number,
	// the string, its NUL-terminated copy for the kernel) is all it
	// allocates.
	if n := testing.AllocsPerRun(100, func() { procStat(cmd.Process.Pid) }); n > 3 {
		t.Errorf("procStat makes %.0f allocations; want at most 3", n)
	}
	if _, _, _, err := procStat(1<<22 + 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("procStat of a missing pid: %v; want not exist", err)
	}
}

package local

import (
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

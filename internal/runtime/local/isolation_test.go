package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func harness(t *testing.T, rt *Runtime, res sandbox.Resources) runtimetest.Harness {
	ref, _ := env(t)
	return runtimetest.Harness{Runtime: rt, Image: ref, Resources: res, Timeout: 2 * time.Minute}
}

func sh(t *testing.T, ag sandbox.Agent, script string) runtimetest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return r
}

// eachRuntime runs fn as a subtest for each of names.
func eachRuntime(t *testing.T, names []string, fn func(t *testing.T, name string)) {
	for _, name := range names {
		t.Run(name, func(t *testing.T) { fn(t, name) })
	}
}

func TestIsolation(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testIsolation)
}

// TestRlimits checks that a sandbox starts with sbx's limits (spec.go),
// not the server's: with the server's soft core and stack limits raised,
// the sandbox still has no core files and an 8 MiB stack.
func TestRlimits(t *testing.T) {
	for res, v := range map[int]uint64{unix.RLIMIT_CORE: 4 << 20, unix.RLIMIT_STACK: 16 << 20} {
		var old unix.Rlimit
		if err := unix.Getrlimit(res, &old); err != nil {
			t.Fatal(err)
		}
		raised := unix.Rlimit{Cur: min(v, old.Max), Max: old.Max}
		if err := unix.Setrlimit(res, &raised); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Setrlimit(res, &old) })
	}
	eachRuntime(t, []string{"crun", "runsc"}, func(t *testing.T, name string) {
		_, ag := runtimetest.Create(t, harness(t, newRuntime(t, name), sandbox.Resources{}), "rl")
		// ulimit counts core in 512-byte blocks, stack and locked memory in KiB.
		r := sh(t, ag, "ulimit -c; ulimit -s; ulimit -r; ulimit -l")
		want := fmt.Sprintf("0\n8192\n0\n%d\n", min(8<<20, hostHardLimits()[unix.RLIMIT_MEMLOCK])>>10)
		if r.Stdout != want {
			t.Errorf("ulimit -c, -s, -r, -l: %q, want %q (stderr %q)", r.Stdout, want, r.Stderr)
		}
	})
}

func testIsolation(t *testing.T, name string) {
	rt := newRuntime(t, name)
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "iso")

	t.Run("OwnProcessesOnly", func(t *testing.T) {
		r := sh(t, ag, "ls /proc | grep -E '^[0-9]+$' | wc -l; tr '\\0' ' ' < /proc/1/cmdline")
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		n, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
		// The agent, sh, ls, grep, wc: a handful, never the host's hundreds.
		if n == 0 || n > 8 || len(lines) < 2 || !strings.HasPrefix(lines[1], AgentPathInSandbox) {
			t.Errorf("processes visible inside: %q", r.Stdout)
		}
		if r := sh(t, ag, "kill -0 "+strconv.Itoa(os.Getpid())); r.Exit.Code == 0 {
			t.Errorf("the host's test process (pid %d) is visible inside", os.Getpid())
		}
	})
	t.Run("OwnCgroupsOnly", func(t *testing.T) {
		if name == "runsc" {
			t.Skip("gVisor shows its own cgroupfs, not the host's")
		}
		// Each hierarchy's root inside is the sandbox's own cgroup (a
		// cgroup namespace): no other cgroup's name shows, and its
		// processes are the sandbox's. A hierarchy the sandbox had no
		// cgroup in would show the server's cgroup there, with the host's
		// other cgroups under it (an attempt to leave blkio, cpuset and
		// name=systemd out to save their mkdirs did that).
		r := sh(t, ag, "find /sys/fs/cgroup/ -mindepth 2 -maxdepth 2 -type d; for f in /sys/fs/cgroup/*/cgroup.procs; do wc -l < $f; done")
		lines := strings.Fields(r.Stdout)
		if len(lines) == 0 {
			t.Fatalf("no cgroup hierarchy inside: %+v", r)
		}
		for _, l := range lines {
			if l == "/sys/fs/cgroup/pids/"+workloadCgroup {
				continue // the sandbox's own workload cgroup (workload.go)
			}
			if n, err := strconv.Atoi(l); err != nil || n > 8 {
				t.Errorf("inside /sys/fs/cgroup: a cgroup not the sandbox's, or a root with more than the sandbox's processes: %q (of %q)", l, r.Stdout)
			}
		}
	})
	t.Run("Hostname", func(t *testing.T) {
		if r := sh(t, ag, "hostname"); r.Stdout != id+"\n" {
			t.Errorf("hostname %q, want %q", r.Stdout, id)
		}
	})
	t.Run("CannotMount", func(t *testing.T) {
		r := sh(t, ag, "mkdir -p /mnt/x && mount -t tmpfs none /mnt/x")
		if r.Exit.Code == 0 {
			t.Errorf("mount succeeded inside the sandbox: %+v", r)
		}
		if r := sh(t, ag, "mount --bind /tmp /mnt/x"); r.Exit.Code == 0 {
			t.Errorf("bind mount succeeded inside the sandbox")
		}
	})
	t.Run("ProcSysReadOnly", func(t *testing.T) {
		for _, f := range []string{"/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"} {
			if r := sh(t, ag, "echo 1 > "+f); r.Exit.Code == 0 {
				t.Errorf("writing %s succeeded", f)
			}
		}
		if r := sh(t, ag, "head -c 16 /proc/kcore | wc -c"); strings.TrimSpace(r.Stdout) != "0" {
			t.Errorf("/proc/kcore is readable: %q", r.Stdout)
		}
	})
	t.Run("NoNewNamespaces", func(t *testing.T) {
		for _, flags := range []string{"-U", "-n", "-m", "-p -f"} {
			if r := sh(t, ag, "unshare "+flags+" true"); r.Exit.Code == 0 {
				t.Errorf("unshare %s succeeded", flags)
			}
		}
	})
	t.Run("Capabilities", func(t *testing.T) {
		// Docker's 14 capabilities but CAP_NET_RAW, nothing else.
		want := "00000000a80405fb"
		r := sh(t, ag, "grep CapEff /proc/self/status")
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("effective capabilities: %q, want %s", r.Stdout, want)
		}
		// gVisor's /proc/<pid>/status has no NoNewPrivs line.
		if r := sh(t, ag, "grep NoNewPrivs /proc/self/status"); name != "runsc" && !strings.Contains(r.Stdout, "1") {
			t.Errorf("no_new_privs not set: %q", r.Stdout)
		}
		if r := sh(t, ag, "grep Seccomp: /proc/self/status"); !strings.Contains(r.Stdout, "2") {
			t.Errorf("seccomp filter not active: %q", r.Stdout)
		}
	})
	t.Run("Devices", func(t *testing.T) {
		r := sh(t, ag, "ls /dev | sort | tr '\\n' ' '")
		for _, d := range strings.Fields(r.Stdout) {
			switch d {
			case "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero":
			case "fuse", "net":
				// gVisor's own /dev/fuse and /dev/net/tun: the Sentry
				// implements them; no host device is behind them.
				if name != "runsc" {
					t.Errorf("unexpected /dev entry %q", d)
				}
			default:
				t.Errorf("unexpected /dev entry %q", d)
			}
		}
		if r := sh(t, ag, "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda"); r.Exit.Code == 0 {
			t.Errorf("a block device made inside could be read")
		}
	})
	t.Run("NoHostLoopback", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var accepted atomic.Int32
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		if r := sh(t, ag, "echo hi | nc -w 2 127.0.0.1 "+port); r.Exit.Code == 0 {
			t.Errorf("nc to the host's 127.0.0.1:%s succeeded: %+v", port, r)
		}
		if r := sh(t, ag, "wget -q -T 2 -O - http://127.0.0.1:"+port+"/"); r.Exit.Code == 0 {
			t.Errorf("wget to the host's loopback succeeded")
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("the host listener accepted %d connections from the sandbox", n)
		}
		// Its own loopback works.
		r := sh(t, ag, "ip addr show lo | grep -c 'inet 127.0.0.1'; ip link | grep -c '^[0-9]'")
		if r.Stdout != "1\n1\n" {
			t.Errorf("want exactly one interface, lo with 127.0.0.1: %q", r.Stdout)
		}
	})
}

func TestOOMKillSparesNeighbour(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testOOMKillSparesNeighbour)
}

func testOOMKillSparesNeighbour(t *testing.T, name string) {
	rt := newRuntime(t, name)
	h := harness(t, rt, sandbox.Resources{MemoryBytes: 64 << 20})
	id, hog := runtimetest.Create(t, h, "hog")
	_, neighbour := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "calm")
	// Doubling a string until the cgroup's limit stops it.
	hogScript := `awk 'BEGIN { s = "xxxxxxxxxxxxxxxx"; while (1) s = s s }'`
	if name == "runsc" {
		// Under gVisor the whole sandbox is one host process tree (the
		// Sentry, the gofer) in the memory cgroup: the host's OOM killer
		// ends the Sentry, and with it the sandbox, not one process.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if r, err := runtimetest.Exec(ctx, hog, sandbox.ExecSpec{Command: []string{"sh", "-c", hogScript}}); err == nil {
			t.Fatalf("memory hog ended %+v, want its sandbox killed", r.Exit)
		}
		st, err := rt.Wait(ctx, id)
		if err != nil || !st.OOMKilled {
			t.Errorf("the hog's sandbox ended %+v, %v; want OOMKilled", st, err)
		}
		if r := sh(t, neighbour, "echo fine"); r.Stdout != "fine\n" {
			t.Errorf("the neighbour was harmed: %+v", r)
		}
		return
	}
	r := sh(t, hog, hogScript)
	if r.Exit.Signal != "SIGKILL" {
		t.Fatalf("memory hog ended %+v, want SIGKILL by the OOM killer", r.Exit)
	}
	if n := rt.cg.oomKills(rt.cfg.CgroupParent, id); n == 0 {
		t.Errorf("the memory cgroup records no OOM kill")
	}
	if r := sh(t, hog, "echo alive"); r.Stdout != "alive\n" {
		t.Errorf("the hog's sandbox no longer answers: %+v", r)
	}
	if r := sh(t, neighbour, "echo fine"); r.Stdout != "fine\n" {
		t.Errorf("the neighbour was harmed: %+v", r)
	}
}

func TestForkBombStopsAtPidsLimit(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testForkBombStopsAtPidsLimit)
}

func testForkBombStopsAtPidsLimit(t *testing.T, name string) {
	rt := newRuntime(t, name)
	pids := int64(64)
	if name == "runsc" {
		pids = runscMinPids
	}
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{Pids: pids}), "bomb")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{
		Command: []string{"sh", "-c", `i=0; while [ $i -lt 300 ]; do sleep 5 & i=$((i+1)); done; echo spawned $i`},
		Timeout: 10 * time.Second,
	})
	if name == "runsc" {
		// Under gVisor sandbox processes are not host processes, but the
		// Sentry needs host threads (and, on the ptrace platform, a stub
		// process per address space) for them: at the limit it cannot get
		// one and the whole sandbox ends, rather than fork failing inside.
		st, werr := rt.Wait(ctx, id)
		t.Logf("exec: %+v, %v; sandbox: %+v, %v", r, err, st, werr)
		if werr != nil {
			t.Errorf("the sandbox neither refused the forks nor ended: %v", werr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Stderr, "fork") && !strings.Contains(r.Stderr, "Resource temporarily unavailable") {
		t.Errorf("300 processes under a limit of 64 did not fail to fork: %+v", r)
	}
	// The limit is the workload cgroup's, which also holds the agent's
	// thread that forks (workload.go); without one, the sandbox's.
	pidsMax, want := filepath.Join("/sys/fs/cgroup/pids", rt.cfg.CgroupParent, id, workloadCgroup, "pids.max"), "65"
	if rt.cg.pids == "" || name == "runsc" {
		pidsMax, want = filepath.Join("/sys/fs/cgroup/pids", rt.cfg.CgroupParent, id, "pids.max"), "64"
	}
	if b, err := os.ReadFile(pidsMax); err == nil && strings.TrimSpace(string(b)) != want {
		t.Errorf("%s = %q, want %s", pidsMax, b, want)
	}
	if want == "65" {
		// The agent's threads, in the sandbox's own cgroup: none spare
		// (threads.go makes 8 when there is no workload cgroup).
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", rt.cfg.CgroupParent, id, "tasks"))
		if n := len(strings.Fields(string(b))); err != nil || n > 10 {
			t.Errorf("the agent has %d threads (%v): spare threads made despite the workload cgroup?", n, err)
		}
	}
	// The agent still serves calls while the limit is reached…
	if _, err := ag.Stat(ctx, "/"); err != nil {
		t.Errorf("the agent stopped answering at the pids limit: %v", err)
	}
	// …and runs commands again once the sleeps end.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"echo", "ok"}})
		if err == nil && r.Stdout == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox never answered again: %+v, %v", r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

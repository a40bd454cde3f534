package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
	"github.com/sbx-run/sbx/internal/usermap"
)

// hostState is what a sandbox could leave behind on the host.
type hostState struct {
	Mounts    []string // mount points and sources in this mount namespace
	Cgroups   []string // cgroups under the test's cgroup parent
	NetNS     []string // network namespaces of this process and its descendants
	Processes []string // this process's descendants
	Files     []string // entries under the runtime's sandbox and OCI dirs
}

func snapshot(t *testing.T, rt *Runtime) hostState {
	t.Helper()
	var s hostState
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		s.Mounts = append(s.Mounts, f[4]+" "+strings.Join(f[slices.Index(f, "-")+1:], " "))
	}
	dirs := rt.cg.dirs
	if rt.cg.stub != "" {
		// What crun writes where the cgroup2 mount was (cgroup2stub.go).
		dirs = append(slices.Clip(dirs), rt.cg.stub)
	}
	for _, dir := range dirs {
		_ = filepath.WalkDir(filepath.Join(dir, rt.cfg.CgroupParent), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != filepath.Join(dir, rt.cfg.CgroupParent) {
				s.Cgroups = append(s.Cgroups, p)
			}
			return nil
		})
	}
	for _, pid := range descendants(os.Getpid()) {
		// A runtime's user namespace helper lives as long as the runtime
		// (internal/usermap: TestMaker checks that it goes with it).
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.Contains(b, []byte(usermap.MakerFlag)) {
			s.Processes = append(s.Processes, fmt.Sprintf("%d %s", pid, comm(pid)))
		}
	}
	for _, pid := range append(descendants(os.Getpid()), os.Getpid()) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && !slices.Contains(s.NetNS, ns) {
			s.NetNS = append(s.NetNS, ns)
		}
	}
	dirs = []string{rt.sbRoot(), rt.oci.root}
	if rt.dataHome != "" {
		dirs = append(dirs, rt.dataHome)
	}
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			s.Files = append(s.Files, filepath.Join(d, e.Name()))
		}
	}
	s.Files = append(s.Files, diskState(t, rt)...)
	sort.Strings(s.Mounts)
	sort.Strings(s.Cgroups)
	sort.Strings(s.NetNS)
	return s
}

func descendants(root int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			parent[pid] = ppid
		}
	}
	var out []int
	for pid := range parent {
		for p := parent[pid]; p != 0; p = parent[p] {
			if p == root {
				out = append(out, pid)
				break
			}
		}
	}
	sort.Ints(out)
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// checkClean checks that the host has nothing the snapshot did not, giving
// reaping and unmounting a moment to settle. What was there before and is
// gone now is no leak of this test: an earlier test's runsc processes may
// still have been on their way out when the snapshot was taken.
func checkClean(t *testing.T, rt *Runtime, before hostState) {
	t.Helper()
	added := func(a, b []string) []string {
		var out []string
		for _, x := range b {
			if !slices.Contains(a, x) {
				out = append(out, x)
			}
		}
		return out
	}
	leaks := func(after hostState) map[string][]string {
		m := map[string][]string{}
		for name, pair := range map[string][2][]string{
			"mounts":             {before.Mounts, after.Mounts},
			"cgroups":            {before.Cgroups, after.Cgroups},
			"network namespaces": {before.NetNS, after.NetNS},
			"processes":          {before.Processes, after.Processes},
			"files":              {before.Files, after.Files},
		} {
			if l := added(pair[0], pair[1]); len(l) > 0 {
				m[name] = l
			}
		}
		return m
	}
	var left map[string][]string
	for i := 0; i < 50; i++ {
		if left = leaks(snapshot(t, rt)); len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, l := range left {
		t.Errorf("%s left behind: %q", name, l)
	}
}

func TestCreateStopCyclesLeaveNothing(t *testing.T) {
	// 50 cycles with crun (the default); runc runs fewer to keep the
	// package's tests near two minutes on a 2-core machine.
	// crun's sandboxes have networks (network_test.go's world).
	for _, tc := range []struct {
		name   string
		cycles int
		net    bool
	}{{"crun", 50, true}, {"runc", 20, false}, {"runsc", 6, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*Config)
			var w *netWorld
			if tc.net {
				w = newNetWorld(t)
				mods = append(mods, withNetwork(w.mgr), withDisk(newDiskPool(t), 64<<20))
			}
			rt := newRuntime(t, tc.name, mods...)
			h := harness(t, rt, sandbox.Resources{})
			before := snapshot(t, rt)
			created, cancelled := 0, 0
			for i := 0; i < tc.cycles; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				if i%3 == 1 {
					// Cancel somewhere inside Create: before, during or after
					// the OCI runtime starts the container.
					time.AfterFunc(time.Duration(rand.IntN(60_000))*time.Microsecond, cancel)
				}
				id := runtimetest.NewID("cyc")
				_, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: h.Image})
				cancel()
				if err != nil {
					if !errors.Is(err, sandbox.ErrDeadlineExceeded) {
						t.Fatalf("Create #%d: %v", i, err)
					}
					cancelled++
					if _, err := rt.Info(context.Background(), id); !errors.Is(err, sandbox.ErrNotFound) {
						t.Fatalf("a cancelled Create left sandbox %s behind: %v", id, err)
					}
					continue
				}
				created++
				ag, err := rt.Agent(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				if i%2 == 0 {
					runtimetest.MustExec(t, context.Background(), ag, "echo hi > /tmp/x; sleep 60 >/dev/null 2>&1 &")
				}
				ag.Close()
				// Mostly a plain kill; every fifth with a grace period.
				grace := time.Duration(0)
				if i%5 == 0 {
					grace = 5 * time.Second
				}
				if err := rt.Stop(context.Background(), id, grace); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				if err := rt.Delete(context.Background(), id); err != nil {
					t.Fatalf("Delete: %v", err)
				}
			}
			t.Logf("%d created, %d cancelled mid-create", created, cancelled)
			checkClean(t, rt, before)
			if w != nil {
				// The namespaces kept for reuse are the runtime's until
				// Close (netpool.go).
				if err := rt.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				checkNetClean(t, w)
			}
		})
	}
}

func TestReattach(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testReattach)
}

func testReattach(t *testing.T, name string) {
	rt1 := newRuntime(t, name)
	id, ag := runtimetest.Create(t, harness(t, rt1, sandbox.Resources{}), "att")
	runtimetest.MustExec(t, context.Background(), ag, "echo kept > /tmp/mark")
	// A second sandbox dies while no runtime watches: the new runtime lists
	// it stopped and releases what it held.
	dead, _ := runtimetest.Create(t, harness(t, rt1, sandbox.Resources{}), "dead")
	if err := rt1.oci.kill(context.Background(), dead, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	rec, _ := rt1.boxes[dead].snapshot()
	waitGone(context.Background(), rec, 10*time.Second, "", nil)

	rt2, err := New(context.Background(), rt1.cfg)
	if err != nil {
		t.Fatalf("second New on the same root: %v", err)
	}
	list, err := rt2.List(context.Background())
	if err != nil || len(list) != 2 {
		t.Fatalf("second runtime lists %+v, %v; want 2 sandboxes", list, err)
	}
	for _, in := range list {
		want := sandbox.RuntimeRunning
		if in.ID == dead {
			want = sandbox.RuntimeStopped
		}
		if in.Status != want {
			t.Errorf("second runtime lists %s as %s, want %s", in.ID, in.Status, want)
		}
	}
	if st, err := rt2.Wait(context.Background(), dead); err != nil || st.Code == 0 {
		t.Errorf("Wait of the dead sandbox: %+v, %v", st, err)
	}
	if err := rt2.Delete(context.Background(), dead); err != nil {
		t.Errorf("Delete of the dead sandbox: %v", err)
	}
	ag2, err := rt2.Agent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer ag2.Close()
	if got := runtimetest.MustExec(t, context.Background(), ag2, "cat /tmp/mark"); got != "kept\n" {
		t.Errorf("exec through the second runtime: %q", got)
	}
	if err := rt2.Delete(context.Background(), id); err != nil {
		t.Fatalf("Delete through the second runtime: %v", err)
	}
}

// TestKilledMidCreate kills a process that creates sandboxes (kill -9, at
// random points) several times over, then checks that a new Runtime on the
// same root re-attaches to what was finished and removes the rest.
func TestKilledMidCreate(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testKilledMidCreate)
}

func testKilledMidCreate(t *testing.T, name string) {
	var mods []func(*Config)
	helperDisk := ""
	if name == "crun" {
		pool := newDiskPool(t)
		mods = append(mods, withDisk(pool, 64<<20))
		helperDisk = filepath.Dir(pool.Dir())
	}
	rt := newRuntime(t, name, mods...)
	ref, _ := env(t)
	before := snapshot(t, rt)
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCreateLoop$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"SBX_HELPER_ROOT="+rt.cfg.Root, "SBX_HELPER_RUN_ROOT="+rt.cfg.RunRoot, "SBX_HELPER_IMAGES="+fixture.imageDir,
			"SBX_HELPER_IMAGE="+ref, "SBX_HELPER_AGENT="+rt.cfg.AgentPath,
			"SBX_HELPER_CGROUP="+rt.cfg.CgroupParent, "SBX_HELPER_RUNTIME="+name, "SBX_HELPER_DISK="+helperDisk)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		t.Logf("round %d: helper said %q", round, lastLine(out.String()))
	}
	rt2, err := New(context.Background(), rt.cfg)
	if err != nil {
		t.Fatalf("New after kills: %v", err)
	}
	list, _ := rt2.List(context.Background())
	running := 0
	for _, in := range list {
		if in.Status == sandbox.RuntimeRunning {
			running++
			ag, err := rt2.Agent(context.Background(), in.ID)
			if err != nil {
				t.Fatal(err)
			}
			runtimetest.MustExec(t, context.Background(), ag, "true")
			ag.Close()
		}
		if err := rt2.Delete(context.Background(), in.ID); err != nil {
			t.Errorf("Delete(%s): %v", in.ID, err)
		}
	}
	t.Logf("recovered %d sandboxes, %d running", len(list), running)
	reapStrayForks(t)
	checkClean(t, rt2, before)
}

// reapStrayForks reaps the zombies this test's kills make of the helper's
// forks. A helper killed between a fork and the child's exec leaves the
// child behind; the child fails its exec steps (exit status 253: Go's
// failure path before exec), and, as this process is a child subreaper
// (the runtime's reaper), becomes our zombie, still named as this binary.
// The runtime reaps only orphans of OCI runtimes by name, never processes
// named like its own binary (those could be os/exec's), so the test does.
func reapStrayForks(t *testing.T) {
	t.Helper()
	self := comm(os.Getpid())
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil || comm(pid) != self {
				continue
			}
			if st, _ := os.ReadFile("/proc/" + f + "/stat"); !bytes.Contains(st, []byte(") Z ")) {
				continue
			}
			var ws syscall.WaitStatus
			if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid {
				t.Logf("reaped a fork of a killed helper (pid %d, exit status %d)", pid, ws.ExitStatus())
			} else if err != nil {
				t.Logf("wait4(%d): %v", pid, err)
			}
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestHelperCreateLoop is not a test: TestKilledMidCreate runs it in a child
// process that creates sandboxes until it is killed.
func TestHelperCreateLoop(t *testing.T) {
	root := os.Getenv("SBX_HELPER_ROOT")
	if root == "" {
		t.Skip("helper process for TestKilledMidCreate")
	}
	images, err := image.New(image.Config{Root: os.Getenv("SBX_HELPER_IMAGES"), Insecure: []string{strings.Split(os.Getenv("SBX_HELPER_IMAGE"), "/")[0]}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Root: root, RunRoot: os.Getenv("SBX_HELPER_RUN_ROOT"), Runtime: os.Getenv("SBX_HELPER_RUNTIME"), AgentPath: os.Getenv("SBX_HELPER_AGENT"), Images: images,
		Defaults:     sandbox.Resources{MemoryBytes: 256 << 20, Pids: 256},
		CgroupParent: os.Getenv("SBX_HELPER_CGROUP"),
	}
	if d := os.Getenv("SBX_HELPER_DISK"); d != "" {
		// The test's pool, mounted in the mount namespace we copied.
		if cfg.Disk, err = OpenDiskPool(DiskPoolConfig{DataDir: d, NoMount: true}); err != nil {
			t.Fatal(err)
		}
		cfg.Defaults.DiskBytes = 64 << 20
	}
	rt, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		id := runtimetest.NewID("kill")
		if _, err := rt.Create(context.Background(), sandbox.Spec{ID: id, Image: os.Getenv("SBX_HELPER_IMAGE")}); err != nil {
			t.Fatal(err)
		}
		fmt.Println("created", i+1)
	}
}

// TestFailedCreateLeavesNothing: an unknown image and an agent that dies at
// start both fail Create with a clear error and leave nothing behind.
func TestFailedCreateLeavesNothing(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testFailedCreateLeavesNothing)
}

func testFailedCreateLeavesNothing(t *testing.T, name string) {
	rt := newRuntime(t, name)
	ref, _ := env(t)
	before := snapshot(t, rt)
	ctx := context.Background()
	host := strings.Split(ref, "/")[0]
	_, err := rt.Create(ctx, sandbox.Spec{ID: runtimetest.NewID("noimg"), Image: host + "/library/nosuch:latest"})
	if !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Create with an unknown image: %v, want NotFound", err)
	}
	// An "agent" that exits at once: static busybox, which knows no
	// applet named sbx-agent.
	cfg := rt.cfg
	cfg.AgentPath = testenv.BusyboxPath
	bad, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Create(ctx, sandbox.Spec{ID: runtimetest.NewID("noagent"), Image: ref})
	if !errors.Is(err, sandbox.ErrUnavailable) || sandbox.ReasonOf(err) != sandbox.ReasonAgentUnavailable {
		t.Errorf("Create with a dying agent: %v, want Unavailable %s", err, sandbox.ReasonAgentUnavailable)
	}
	if list, _ := rt.List(ctx); len(list) != 0 {
		t.Errorf("List after failed creates: %+v", list)
	}
	checkClean(t, rt, before)
}

package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// What differs under gVisor (runsc, tested with Debian's 20221219):
//
//   - It needs global flags (runscFlags).
//   - The pid file names the sandbox process (the Sentry), which stands for
//     the container's PID 1: it runs as long as the agent does and exits
//     with its status, so alive, the reaper and Stop work on it unchanged.
//   - The agent's socket is a host socket that the container's gofer, not
//     the agent, listens on (record.ListenerPID; see dialAgent).
//   - The agent's Linux-only assumptions that this gVisor breaks are worked
//     around on the host side (runscAgent).

// runscFlags are gVisor's global flags:
//   - --network=sandbox when sandboxes have networks: the Sentry's own
//     network stack serves the namespace sbx made and set up first
//     (netnsFirst), taking over its eth0; --network=none otherwise:
//     sandboxes are loopback-only, and runsc does not make a network
//     namespace of its own (without one in the spec every create fails with
//     "cannot run with network enabled in root network namespace").
//   - --host-uds=create: the agent's socket is bound inside the sandbox on
//     the state dir's bind mount; only with this does the gofer create it
//     as a real host socket the host can connect to. "create" lets the
//     sandbox bind sockets in its mounts, not connect to the host's ("open",
//     "all").
//   - --oci-seccomp: gVisor ignores the spec's seccomp profile unless told;
//     with it the Sentry applies it to the sandbox's processes, so the
//     same system calls are refused as under crun and runc (unshare(2) of
//     a user namespace among them), on top of the Sentry's own filter
//     against the host kernel.
//
// Not --net-raw: gVisor then drops CAP_NET_RAW from the spec's set.
func runscFlags(networked bool) []string {
	network := "--network=none"
	if networked {
		network = "--network=sandbox"
	}
	return []string{network, "--host-uds=create", "--oci-seccomp"}
}

// runscRunShim works around runsc 20221219's test for "am I in the root
// network namespace?", which it makes after joining the namespace it is to
// serve: it takes /proc/sys/net/core/rmem_default existing for yes, but
// since Linux 6.x (net.core.rmem_default became per namespace) that file
// exists in every network namespace, so --network=sandbox always fails
// with "cannot run with network enabled in root network namespace". Run in
// a mount namespace of its own (Go makes its mounts private) where an
// empty read-only tmpfs hides /proc/sys/net (not only net/core: procfs
// looks that one up anew per network namespace, past a mount on the root
// namespace's), runsc sees ENOENT and goes on; the namespace it serves is
// always one sbx made (netnsFirst), so the test guards nothing here. runsc
// reads no other net sysctl of the host in this mode, and the Sentry and
// gofer it starts pivot into roots of their own.
const runscRunShim = `mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k,mode=0555 sbx-runsc /proc/sys/net && exec "$0" "$@"`

// runscRunCommand returns the command that runs runsc at path with args
// through runscRunShim. argv[0] of the runsc process stays path, so
// bundleProcesses still finds it.
func runscRunCommand(path string, args []string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", append([]string{"-c", runscRunShim, path}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd
}

// runscSandboxNetwork reports whether o is runsc serving sbx's network
// namespaces (--network=sandbox).
func (o *ociRuntime) runscSandboxNetwork() bool {
	return o.name == "runsc" && slices.Contains(o.flags, "--network=sandbox")
}

// goferPID returns the pid of the gofer of runsc container id: the host
// process that serves the container's files and listens on the Unix sockets
// bound inside it. `runsc state` does not show it; runsc's state file under
// our --root (<sandbox id>_sandbox:<container id>.state) does.
func (o *ociRuntime) goferPID(id string) (int, error) {
	gofer, _, err := o.runscPIDs(id)
	return gofer, err
}

// runscPIDs returns the gofer's and the Sentry's pids from runsc's state
// file of container id.
func (o *ociRuntime) runscPIDs(id string) (gofer, sentry int, err error) {
	path := filepath.Join(o.root, id+"_sandbox:"+id+".state")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read runsc's state of container %s (is this runsc version supported?): %w", id, err)
	}
	var st struct {
		GoferPID int `json:"goferPid"`
		Sandbox  struct {
			PID int `json:"pid"`
		} `json:"sandbox"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.GoferPID <= 0 {
		return 0, 0, fmt.Errorf("runsc's state file %s names no gofer pid (is this runsc version supported?)", path)
	}
	return st.GoferPID, st.Sandbox.PID, nil
}

// watchRunsc has the reaper reap container id's gofer and Sentry as soon
// as they die, whether or not the record knows them (a killed Create's
// may not): runsc's delete waits for them to vanish, and their zombies,
// our children, would not while it runs (the orphan sweep waits for OCI
// commands to finish). It returns the pids to forget afterwards.
func (r *Runtime) watchRunsc(id string) []int {
	gofer, sentry, err := r.oci.runscPIDs(id)
	if err != nil {
		return nil
	}
	var pids []int
	for _, pid := range []int{gofer, sentry} {
		if pid > 0 {
			r.reaper.watch(pid)
			pids = append(pids, pid)
		}
	}
	return pids
}

// runscStub is a process the Sentry started (a ptrace stub), by pid and
// start time.
type runscStub struct {
	pid   int
	start uint64
}

// runscStubs returns the descendants of the Sentry sentry: its ptrace
// stubs, which become our zombie children when it dies.
func runscStubs(sentry int) []runscStub {
	var out []runscStub
	queue := []int{sentry}
	for len(queue) > 0 && len(out) < 1<<16 {
		pid := queue[0]
		queue = queue[1:]
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		for _, task := range tasks {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/children")
			for _, f := range strings.Fields(string(b)) {
				child, err := strconv.Atoi(f)
				if err != nil {
					continue
				}
				if _, start, err := pidStart(child); err == nil {
					out = append(out, runscStub{child, start})
					queue = append(queue, child)
				}
			}
		}
	}
	return out
}

// reapStubs waits until each stub is gone, reaping those that became our
// zombie children, so that a deleted sandbox leaves no process behind even
// for the moment until the reaper's next sweep.
func reapStubs(stubs []runscStub) {
	for _, s := range stubs {
		for i := 0; sameProcess(s.pid, s.start) && i < 200; i++ {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(s.pid, &ws, syscall.WNOHANG, nil)
			if !sameProcess(s.pid, s.start) {
				break
			}
			sleepBackoff(i)
		}
	}
}

// runscAgent is the shared client of an agent under gVisor, with host-side
// stand-ins for what that gVisor lacks:
//
//   - openat2(2) fails with ENOSYS, so the agent cannot open its log files
//     for a Logs call without Follow; the host reads them from the state
//     dir instead (agent.ReadLogs, made for that).
//   - Setting a PTY's window size does not send SIGWINCH, so Resize sends
//     it to the process's group itself (the kernel would send it to the
//     terminal's foreground group, which is that group unless the process
//     started job control).
//
// Drop each once the agent handles it (an ENOSYS fallback in
// agent.openPathBeneath; SIGWINCH to TIOCGPGRP's group in Resize).
type runscAgent struct {
	sharedClient
	stateDir string
}

// Logs reads the log from the host unless it must follow the agent.
func (a runscAgent) Logs(ctx context.Context, opts sandbox.LogOptions) (sandbox.OutputStream, error) {
	if opts.Follow {
		return a.sharedClient.Logs(ctx, opts)
	}
	return agent.ReadLogs(a.stateDir, opts)
}

// Resize sets the window size, then delivers the SIGWINCH gVisor does not.
func (a runscAgent) Resize(ctx context.Context, execID string, rows, cols uint16) error {
	if err := a.sharedClient.Resize(ctx, execID, rows, cols); err != nil {
		return err
	}
	if err := a.sharedClient.Signal(ctx, execID, "SIGWINCH"); err != nil && sandbox.ReasonOf(err) != sandbox.ReasonProcessExited {
		return err
	}
	return nil
}

// killBundleProcesses kills every runsc process of the bundle dir (its
// Sentry, its gofer, a `runsc run` still in flight) and waits until they
// are gone, reporting whether there were any. A server killed in Create
// leaves them behind: `runsc run` goes on after its parent died, possibly
// past recovery's delete, and runsc's delete waits for a Sentry it did not
// start to vanish, which its zombie (our child) never does before the
// reaper sees it. The Sentry's ptrace stubs die with it.
//
// Processes are found by their command line (argv[0] runsc or runsc-*, and
// a --bundle naming dir): a sandbox cannot forge one, since its processes
// are not host processes under gVisor.
func (r *Runtime) killBundleProcesses(dir string) bool {
	pids := bundleProcesses(dir)
	type proc struct {
		pid   int
		start uint64
	}
	var procs []proc
	for _, pid := range pids {
		if _, start, err := pidStart(pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			r.reaper.watch(pid)
			procs = append(procs, proc{pid, start})
		}
	}
	for _, p := range procs {
		for i := 0; alive(p.pid, p.start) && i < 200; i++ {
			sleepBackoff(i)
		}
		r.reaper.watch(p.pid)
		r.reaper.forget(p.pid)
	}
	return len(procs) > 0
}

// bundleProcesses returns the pids of runsc processes whose command line
// names bundle dir.
func bundleProcesses(dir string) []int {
	return runscProcs(func(args []string) bool {
		for i, a := range args {
			if a == "--bundle="+dir || ((a == "--bundle" || a == "-bundle") && i+1 < len(args) && args[i+1] == dir) {
				return true
			}
		}
		return false
	})
}

// runscProcs returns the pids of runsc processes whose arguments (after
// the program's name) match.
func runscProcs(match func(args []string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "runsc") && match(args[1:]) {
			out = append(out, pid)
		}
	}
	return out
}

// brokenState reports whether runsc's state file of container id is there
// but not JSON: a runsc killed while it wrote the file (a server killed
// mid-create; seen on a fast machine) leaves it empty, and every runsc
// command on the container then fails to load it.
func (o *ociRuntime) brokenState(id string) bool {
	b, err := os.ReadFile(filepath.Join(o.root, id+"_sandbox:"+id+".state"))
	return err == nil && !json.Valid(b)
}

// removeBrokenState removes what runsc keeps of container id, whose state
// file is broken, after killing the runsc processes that name it (its
// Sentry and gofer, if they started); the caller removes its cgroups,
// which kills whatever else is in them.
func (o *ociRuntime) removeBrokenState(id string) error {
	for _, pid := range runscProcesses(id) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	base := filepath.Join(o.root, id+"_sandbox:"+id)
	var errs []error
	for _, f := range []string{base + ".state", base + ".lock"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove runsc's broken state of container %s: %w", id, err)
	}
	return nil
}

// runscProcesses returns the pids of runsc processes with id among their
// arguments.
func runscProcesses(id string) []int {
	return runscProcs(func(args []string) bool { return slices.Contains(args, id) })
}

// removeStaleLock removes runsc's lock file of container id once its state
// file is gone: a `runsc run` killed before it saved the state leaves the
// lock, which runsc's delete (not knowing the container) keeps.
func (o *ociRuntime) removeStaleLock(id string) error {
	base := filepath.Join(o.root, id+"_sandbox:"+id)
	if _, err := os.Lstat(base + ".state"); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.Remove(base + ".lock"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove runsc's lock of container %s: %w", id, err)
	}
	return nil
}

// runscMinPids is the smallest process limit a gVisor sandbox gets: the
// pids cgroup counts the Sentry's and gofer's host threads and the ptrace
// stubs, not sandbox processes, and below about 32 the Sentry cannot even
// boot (verified with runsc 20221219 on 2 cores; more cores, more threads).
const runscMinPids = 128

// checkRuntimeResources checks what only one OCI runtime requires of
// resolved resources.
func checkRuntimeResources(runtime string, r sandbox.Resources) error {
	if runtime == "runsc" && r.Pids < runscMinPids {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec,
			"process limit %d is too low for gVisor (runsc), whose own threads count against it: use at least %d", r.Pids, runscMinPids)
	}
	return nil
}

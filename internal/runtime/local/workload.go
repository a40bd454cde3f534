package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sbx-run/sbx/internal/agent"
)

// The workload cgroup (see internal/agent/workload.go). On a host with the
// v1 pids controller, a sandbox's pids cgroup <parent>/<id> gets a child
// "w" with the sandbox's pids limit, made before the OCI runtime starts;
// the sandbox's own cgroup, where the agent runs, allows
// workloadHeadroom more. The agent gets w's tasks file open (it cannot
// open it: the sandbox's cgroup hierarchies are read-only inside), moves
// one of its threads there and forks every sandbox process from it. A
// fork bomb then fills w, and the agent keeps the room to make the
// threads its Go runtime asks for, with no spare threads made ahead.

// workloadCgroup is the name of the workload cgroup under a sandbox's.
const workloadCgroup = "w"

// workloadHeadroom is how many more tasks a sandbox's pids cgroup allows
// than its workload cgroup: the agent's threads (about 5 in use; the Go
// runtime never frees one) and the workload cgroup's own thread.
const workloadHeadroom = 64

// prepareWorkload makes the workload cgroup of sandbox id, raises spec's
// pids limit by the headroom and returns w's tasks file open for the
// agent, its descriptor number in the container being fd, with the agent's
// flag added to spec. It returns nil where there is no v1 pids hierarchy
// or no pids limit; the agent then makes spare threads instead.
func (r *Runtime) prepareWorkload(spec *specs.Spec, id string, fd int) (*os.File, error) {
	if r.cg.pids == "" || r.oci.name == "runsc" || spec.Linux == nil || spec.Linux.Resources == nil ||
		spec.Linux.Resources.Pids == nil || spec.Linux.Resources.Pids.Limit == nil || *spec.Linux.Resources.Pids.Limit <= 0 {
		return nil, nil
	}
	limit := *spec.Linux.Resources.Pids.Limit
	dir := filepath.Join(r.cg.pids, r.cfg.CgroupParent, id)
	w := filepath.Join(dir, workloadCgroup)
	if err := os.MkdirAll(w, 0o755); err != nil {
		return nil, fmt.Errorf("workload cgroup: %w", err)
	}
	// One more than the limit: the agent's thread that forks is there too.
	if err := os.WriteFile(filepath.Join(w, "pids.max"), []byte(strconv.FormatInt(limit+1, 10)), 0); err != nil {
		return nil, fmt.Errorf("workload cgroup's pids limit: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(w, "tasks"), os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("workload cgroup's tasks: %w", err)
	}
	raised := limit + workloadHeadroom
	spec.Linux.Resources.Pids.Limit = &raised
	spec.Process.Args = append(spec.Process.Args, "--"+agent.WorkloadFlag+"="+strconv.Itoa(fd))
	return f, nil
}

// removeWorkload removes a sandbox's workload cgroup, so that its own can
// go; a missing one is fine.
func (m cgroupMounts) removeWorkload(parent, id string) error {
	if m.pids == "" {
		return nil
	}
	return removeCgroupTree(filepath.Join(m.pids, parent, id, workloadCgroup))
}

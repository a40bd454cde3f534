package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Parking. A deleted sandbox's teardown (its PID 1's exit, unmounts,
// network and cgroup removal) costs the host more CPU than a claim from a
// warm pool, and the lifecycle manager runs it later, when creates pause.
// Until then the sandbox must not run: Park freezes its cgroup, which stops
// every process in it at once for the price of one write (the kernel
// freezes each task when it next runs). Delete ends a parked sandbox like
// any other: stop sends SIGKILL and then thaws the cgroup (a task frozen
// through the v1 freezer dies of a fatal signal only once thawed), also in
// a server that restarted with parked sandboxes and re-found them.

// Park freezes every process of sandbox id and reports whether it did: it
// does not under runsc (its Sentry's processes are not the sandbox's), for
// a sandbox that does not run, or without a freezer (a v1 host without the
// freezer controller).
func (r *Runtime) Park(ctx context.Context, id string) (bool, error) {
	if r.oci.name == "runsc" {
		return false, nil
	}
	b, err := r.lookup(id)
	if err != nil {
		return false, err
	}
	b.op.Lock()
	defer b.op.Unlock()
	rec, deleted := b.snapshot()
	if deleted || rec.Phase != phaseCreated || !alive(rec.PID, rec.PIDStart) {
		return false, nil
	}
	usage, ok := r.cg.memoryUsage(r.cfg.CgroupParent, id)
	if !ok || !r.parked.reserve(id, usage) {
		return false, nil
	}
	parked, err := r.cg.freeze(r.cfg.CgroupParent, id, true)
	if !parked {
		r.parked.release(id)
	}
	return parked, err
}

// parkBudget bounds the memory that parked sandboxes hold at once. A parked
// sandbox's record is gone, so it counts against no tenant's quota, and
// its teardown may wait up to the lifecycle's limit (30 s): a tenant that
// creates and deletes in a loop would otherwise keep that many frozen
// sandboxes, and all their memory, which frozen processes cannot give
// back. Past the budget Park declines, and the teardown runs as always.
type parkBudget struct {
	mu   sync.Mutex
	used int64
	by   map[string]int64
}

// parkMemoryBudget is the budget: an eighth of the host's memory.
var parkMemoryBudget = sync.OnceValue(func() int64 { return memTotal() / 8 })

// reserve counts usage bytes for id if they fit the budget.
func (p *parkBudget) reserve(id string, usage int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used+usage > parkMemoryBudget() {
		return false
	}
	if p.by == nil {
		p.by = map[string]int64{}
	}
	p.used += usage
	p.by[id] += usage
	return true
}

// release gives back what id reserved, if anything.
func (p *parkBudget) release(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used -= p.by[id]
	delete(p.by, id)
}

// memTotal is the host's memory in bytes (0 if unknown: nothing is parked).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	if _, err := fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb); err != nil {
		return 0
	}
	return kb << 10
}

// memoryUsage is the memory charged to sandbox id's cgroup (memory.current
// on v2, memory.usage_in_bytes on v1), and whether it could be read.
func (m cgroupMounts) memoryUsage(parent, id string) (int64, bool) {
	var file string
	switch {
	case m.layout == CgroupV2:
		file = filepath.Join(m.v2, parent, id, "memory.current")
	case m.memory != "":
		file = filepath.Join(m.memory, parent, id, "memory.usage_in_bytes")
	default:
		return 0, false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// thaw undoes Park; a sandbox that was not parked is left as it is.
func (r *Runtime) thaw(id string) {
	if r.oci.name != "runsc" {
		_, _ = r.cg.freeze(r.cfg.CgroupParent, id, false)
	}
}

// freeze freezes (or thaws) the sandbox's cgroup: freezer.state in the v1
// freezer hierarchy, else cgroup.freeze on v2. It reports false, with no
// error, when there is no freezer or no such cgroup.
func (m cgroupMounts) freeze(parent, id string, frozen bool) (bool, error) {
	var file, value string
	switch {
	case m.freezer != "":
		file, value = filepath.Join(m.freezer, parent, id, "freezer.state"), "THAWED"
		if frozen {
			value = "FROZEN"
		}
	case m.layout == CgroupV2:
		file, value = filepath.Join(m.v2, parent, id, "cgroup.freeze"), "0"
		if frozen {
			value = "1"
		}
	default:
		return false, nil
	}
	// O_NOFOLLOW: the cgroup dir is the host's, but never follow a link.
	f, err := os.OpenFile(file, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.WriteString(value); err != nil {
		return false, err
	}
	return true, nil
}

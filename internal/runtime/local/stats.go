package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"golang.org/x/sys/unix"
)

var _ sandbox.StatsReader = (*Runtime)(nil)

// Stats reads what running sandbox id uses from its cgroups and, with a
// disk pool, from the btrfs qgroup of its subvolume: a few small file
// reads and two ioctls, never a call to the agent, so that a caller may
// poll it.
//
// Under runsc the cgroup holds gVisor's Sentry and gofer, which run the
// sandbox's processes on their behalf: CPU, memory and pids count them
// (pids counts their host threads, not the sandbox's processes).
func (r *Runtime) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	b, err := r.running(id)
	if err != nil {
		return sandbox.Stats{}, err
	}
	rec, _ := b.snapshot()
	st, err := r.cg.stats(r.cfg.CgroupParent, id)
	if err == nil && r.cfg.Disk != nil {
		st.DiskBytes, err = r.cfg.Disk.referenced(filepath.Base(b.dir))
		st.DiskLimitBytes = rec.Resources.DiskBytes
	}
	if err != nil {
		// The sandbox may have ended since running(): its cgroups go
		// with it. Say so rather than report a host failure.
		if _, rerr := r.running(id); rerr != nil {
			return sandbox.Stats{}, rerr
		}
		return sandbox.Stats{}, sandbox.Internal("read the resource usage of sandbox %q: %w", id, err)
	}
	st.ReadAt = time.Now()
	return st, nil
}

// stats reads the usage and limits in sandbox id's cgroups: in the
// unified hierarchy on a v2 host, else in the v1 controllers' (a hybrid
// host's cgroup2 mount has no controllers).
func (m cgroupMounts) stats(parent, id string) (sandbox.Stats, error) {
	if m.layout == CgroupV2 {
		return readStatsV2(filepath.Join(m.v2, parent, id))
	}
	sub := func(mnt string) string {
		if mnt == "" {
			return ""
		}
		return filepath.Join(mnt, parent, id)
	}
	return readStatsV1(sub(m.cpuacct), sub(m.memory), sub(m.pids))
}

// readStatsV2 reads a cgroup v2 dir. memory.peak is missing before Linux
// 5.19; the peak is 0 then.
func readStatsV2(dir string) (sandbox.Stats, error) {
	var st sandbox.Stats
	r := cgroupReader{dir: dir}
	if usec, ok := r.keyed("cpu.stat", "usage_usec"); ok {
		st.CPU = time.Duration(usec) * time.Microsecond
	}
	st.MemoryBytes = r.value("memory.current")
	st.MemoryPeakBytes = r.optional("memory.peak")
	st.MemoryLimitBytes = r.value("memory.max")
	st.OOMKills, _ = r.keyed("memory.events", "oom_kill")
	st.Pids = r.value("pids.current")
	st.PidsLimit = r.value("pids.max")
	return st, r.err
}

// readStatsV1 reads the sandbox's dirs in the v1 cpuacct, memory and pids
// hierarchies; a controller that is not mounted ("") leaves its fields 0.
// oom_kill in memory.oom_control is missing before Linux 4.13; the count is
// 0 then.
func readStatsV1(cpuacct, memory, pids string) (sandbox.Stats, error) {
	var st sandbox.Stats
	var errs []error
	if cpuacct != "" {
		r := cgroupReader{dir: cpuacct}
		st.CPU = time.Duration(r.value("cpuacct.usage")) // nanoseconds
		errs = append(errs, r.err)
	}
	if memory != "" {
		r := cgroupReader{dir: memory}
		st.MemoryBytes = r.value("memory.usage_in_bytes")
		st.MemoryPeakBytes = r.value("memory.max_usage_in_bytes")
		st.MemoryLimitBytes = r.value("memory.limit_in_bytes")
		st.OOMKills, _ = r.keyed("memory.oom_control", "oom_kill")
		errs = append(errs, r.err)
	}
	if pids != "" {
		r := cgroupReader{dir: pids}
		st.Pids = r.value("pids.current")
		st.PidsLimit = r.value("pids.max")
		errs = append(errs, r.err)
		// With a workload cgroup (workload.go) the sandbox's limit is
		// its; it holds one thread of the agent's beyond the limit.
		w := cgroupReader{dir: filepath.Join(pids, workloadCgroup)}
		if limit := w.value("pids.max"); w.err == nil && limit > 0 {
			st.PidsLimit = limit - 1
		}
	}
	return st, errors.Join(errs...)
}

// cgroupReader reads files of one cgroup dir and keeps the first error,
// so that a reading is a list of fields rather than of error checks.
type cgroupReader struct {
	dir string
	err error
	// buf holds the last file read, parsed before the next read.
	buf []byte
}

// read reads file name into buf with plain system calls (readSmall):
// os.ReadFile would first try to register the file with the Go poller,
// which costs about as much as the read.
func (r *cgroupReader) read(name string) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	n, err := readSmall(filepath.Join(r.dir, name), r.buf)
	return r.buf[:n], err
}

// readKernelFile reads a small sysfs file as cgroupReader.read does. The
// files Stats reads are a line or a few, well under the 4 KiB one read
// returns.
func readKernelFile(path string) ([]byte, error) {
	buf := make([]byte, 4096)
	n, err := readSmall(path, buf)
	return buf[:n], err
}

// value reads a file holding one number; see parseCgroupValue.
func (r *cgroupReader) value(name string) int64 {
	b, err := r.read(name)
	if err == nil {
		var n int64
		if n, err = parseCgroupValue(b); err == nil {
			return n
		}
		err = fmt.Errorf("%s: %w", filepath.Join(r.dir, name), err)
	}
	if r.err == nil {
		r.err = err
	}
	return 0
}

// optional is value for a file that older kernels lack: 0 if missing.
func (r *cgroupReader) optional(name string) int64 {
	if r.err != nil {
		return 0
	}
	if err := unix.Access(filepath.Join(r.dir, name), unix.F_OK); errors.Is(err, unix.ENOENT) {
		return 0
	}
	return r.value(name)
}

// keyed reads key's value in a flat keyed file ("key value" lines); a
// missing key is (0, false), a missing file an error.
func (r *cgroupReader) keyed(name, key string) (int64, bool) {
	b, err := r.read(name)
	if err != nil {
		if r.err == nil {
			r.err = err
		}
		return 0, false
	}
	return parseKeyed(b, key)
}

// cgroupUnlimited is where a v1 limit counts as none: the kernel shows an
// unset limit as the largest page count in bytes (0x7ffffffffffff000).
const cgroupUnlimited = 1 << 62

// parseCgroupValue parses a cgroup file holding one number. "max" (v2's
// no limit) and v1's huge unset limits are 0, which Stats documents as
// no limit.
func parseCgroupValue(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	if n >= cgroupUnlimited {
		return 0, nil
	}
	return int64(n), nil
}

// parseKeyed returns key's value in a flat keyed file such as cpu.stat,
// memory.events or memory.oom_control.
func parseKeyed(b []byte, key string) (int64, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// referenced returns the bytes the qgroup of subvolume name references:
// what its disk limit counts. btrfs updates it when it commits a
// transaction (every 30 s by default, or on sync), so it lags writes.
func (p *DiskPool) referenced(name string) (int64, error) {
	sub := filepath.Join(p.dir, name)
	fd, err := unix.Open(sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", sub, err)
	}
	defer unix.Close(fd)
	id, err := subvolID(fd)
	if err != nil {
		return 0, fmt.Errorf("subvolume id of %s: %w", sub, err)
	}
	dir, err := btrfsSysfs(fd)
	if err != nil {
		return 0, err
	}
	b, err := readKernelFile(filepath.Join(dir, "qgroups", "0_"+strconv.FormatUint(id, 10), "referenced"))
	if err != nil {
		return 0, fmt.Errorf("qgroup of %s: %w", sub, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("qgroup of %s: referenced %q is not a number", sub, b)
	}
	return n, nil
}

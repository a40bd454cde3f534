package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// CgroupLayout is how the host mounts cgroups.
type CgroupLayout int

// The layouts.
const (
	// CgroupV1: only v1 controller hierarchies.
	CgroupV1 CgroupLayout = iota + 1
	// CgroupHybrid: v1 controllers plus a cgroup2 mount (usually
	// /sys/fs/cgroup/unified) without controllers.
	CgroupHybrid
	// CgroupV2: the unified hierarchy only, at /sys/fs/cgroup.
	CgroupV2
)

func (l CgroupLayout) String() string {
	switch l {
	case CgroupV1:
		return "v1"
	case CgroupHybrid:
		return "hybrid"
	case CgroupV2:
		return "v2"
	}
	return "unknown"
}

// cgroupMounts are the cgroup hierarchies mounted in this mount namespace.
type cgroupMounts struct {
	layout CgroupLayout
	// dirs are the mount points of every hierarchy (v1 and v2), where a
	// sandbox's cgroup may appear as <dir>/<parent>/<id>.
	dirs []string
	// memory is the mount point of the memory controller ("" if none).
	memory string
	// v2 is the mount point of the cgroup2 hierarchy ("" if none).
	v2 string
	// freezer is the mount point of the v1 freezer controller ("" if
	// none); on v2 the freezer is cgroup.freeze in v2.
	freezer string
	// cpuacct and pids are the mount points of those v1 controllers ("" if
	// none), which Stats reads.
	cpuacct, pids string
	// stub is where the cgroup2 hierarchy was before EnterMountNamespace
	// put a tmpfs there ("" if it did not), in which crun still makes a
	// directory per container (see cgroup2stub.go).
	stub string
}

// detectCgroups reads this mount namespace's mounts.
func detectCgroups() (cgroupMounts, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2", "tmpfs"))
	if err != nil {
		return cgroupMounts{}, err
	}
	var m cgroupMounts
	v1 := false
	for _, in := range infos {
		// "36 30 0:33 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory":
		// a v1 hierarchy's controllers are its superblock's options.
		mnt := in.Mountpoint
		switch in.FSType {
		case "cgroup":
			v1 = true
			m.dirs = append(m.dirs, mnt)
			for _, o := range strings.Split(in.VFSOptions, ",") {
				switch o {
				case "memory":
					m.memory = mnt
				case "freezer":
					m.freezer = mnt
				case "cpuacct":
					m.cpuacct = mnt
				case "pids":
					m.pids = mnt
				}
			}
		case "cgroup2":
			m.v2 = mnt
			m.dirs = append(m.dirs, mnt)
		case "tmpfs":
			if in.Source == cgroup2StubSource {
				m.stub = mnt
			}
		}
	}
	switch {
	case v1 && m.v2 != "":
		m.layout = CgroupHybrid
	case v1:
		m.layout = CgroupV1
	case m.v2 != "":
		m.layout = CgroupV2
		m.memory = m.v2
	default:
		return cgroupMounts{}, errors.New("no cgroup hierarchy is mounted: mount cgroup2 at /sys/fs/cgroup")
	}
	return m, nil
}

// cgroupsPath is the spec's linux.cgroupsPath of a sandbox: a plain path
// relative to each hierarchy's root, the same on v1 and v2.
func cgroupsPath(parent, id string) string { return "/" + parent + "/" + id }

// removeCgroup kills what is left in the sandbox's cgroups and removes them.
// The OCI runtime's delete normally does this; this catches what a killed
// runtime or a killed server left behind.
//
// It runs once per sandbox life in every hierarchy (ten on a hybrid host),
// so the common case costs one rmdir per hierarchy: an empty cgroup without
// children (the container's PID 1 has exited, which leaves its cgroups
// empty) goes at once, and only a busy one is looked into.
func (m cgroupMounts) removeCgroup(parent, id string) error {
	errs := []error{m.removeWorkload(parent, id)}
	for _, d := range m.dirs {
		if err := removeCgroupTree(filepath.Join(d, parent, id)); err != nil {
			errs = append(errs, err)
		}
	}
	if m.stub != "" {
		if err := removeStubDir(filepath.Join(m.stub, parent, id)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes dir and its sub-cgroups, depth first, killing any
// process still in them. A dir that does not exist is fine.
func removeCgroupTree(dir string) error {
	switch err := unix.Rmdir(dir); {
	case err == nil || errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			_ = removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		killCgroupProcs(dir)
		sleepBackoff(attempt)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

func killCgroupProcs(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// oomKills returns how many processes the OOM killer has killed in the
// sandbox's memory cgroup, or -1 if unknown.
func (m cgroupMounts) oomKills(parent, id string) int {
	if m.memory == "" {
		return -1
	}
	dir := filepath.Join(m.memory, parent, id)
	file, key := "memory.oom_control", "oom_kill"
	if m.layout == CgroupV2 {
		file, key = "memory.events", "oom_kill"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			var n int
			if _, err := fmt.Sscan(f[1], &n); err == nil {
				return n
			}
		}
	}
	return -1
}

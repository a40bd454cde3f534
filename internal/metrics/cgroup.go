package metrics

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// cgroupReader reads a sandbox's CPU and memory usage from the cgroup
// hierarchies mounted in this mount namespace, where the runtime puts each
// sandbox at <mount>/<parent>/<id>.
type cgroupReader struct {
	parent string
	cpuV1  string // the cpuacct hierarchy, if v1
	memV1  string // the memory hierarchy, if v1
	v2     string // the cgroup2 hierarchy, if it has controllers
}

func newCgroupReader(parent string) *cgroupReader {
	c := &cgroupReader{parent: parent}
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return c
	}
	for _, in := range infos {
		mnt, opts := in.Mountpoint, ","+in.VFSOptions+","
		switch {
		case in.FSType == "cgroup" && strings.Contains(opts, ",cpuacct,"):
			c.cpuV1 = mnt
		case in.FSType == "cgroup" && strings.Contains(opts, ",memory,"):
			c.memV1 = mnt
		case in.FSType == "cgroup2":
			if b, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers")); err == nil && bytes.Contains(b, []byte("memory")) {
				c.v2 = mnt
			}
		}
	}
	return c
}

// usage returns the CPU seconds and memory bytes of sandbox id, and whether
// its cgroup was found.
func (c *cgroupReader) usage(id string) (cpu, mem float64, ok bool) {
	if strings.ContainsAny(id, "/.") || id == "" {
		return 0, 0, false
	}
	if c.v2 != "" {
		dir := filepath.Join(c.v2, c.parent, id)
		usec, ok1 := statField(filepath.Join(dir, "cpu.stat"), "usage_usec")
		m, ok2 := readUint(filepath.Join(dir, "memory.current"))
		return usec / 1e6, m, ok1 || ok2
	}
	ns, ok1 := readUint(filepath.Join(c.cpuV1, c.parent, id, "cpuacct.usage"))
	m, ok2 := readUint(filepath.Join(c.memV1, c.parent, id, "memory.usage_in_bytes"))
	return ns / 1e9, m, (c.cpuV1 != "" && ok1) || (c.memV1 != "" && ok2)
}

func readUint(path string) (float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return float64(v), err == nil
}

func statField(path, key string) (float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseUint(v, 10, 64)
			return float64(n), err == nil
		}
	}
	return 0, false
}

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MemUsedBytes is MemTotal - MemAvailable from /proc/meminfo: what the host
// cannot hand out without swapping, the figure density is about.
func MemUsedBytes() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total, avail int64 = -1, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "MemTotal:":
			total = v * 1024
		case "MemAvailable:":
			avail = v * 1024
		}
	}
	if total < 0 || avail < 0 {
		return 0, fmt.Errorf("/proc/meminfo has no MemTotal or MemAvailable")
	}
	return total - avail, nil
}

// ProcessCount is the number of processes on the host.
func ProcessCount() int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// CgroupProcs returns the pids in the sandboxes' cgroups (sbx/<id> in the
// v1 pids or memory hierarchy, or in the v2 hierarchy): only this run's
// sandboxes, whatever else runs on the host.
func CgroupProcs(ids []string) []int {
	var pids []int
	for _, id := range ids {
		for _, dir := range []string{"/sys/fs/cgroup/pids/sbx", "/sys/fs/cgroup/memory/sbx", "/sys/fs/cgroup/sbx"} {
			b, err := os.ReadFile(filepath.Join(dir, id, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
			break
		}
	}
	return pids
}

// RSSOf sums the resident memory of the pids whose command name is comm
// (any when comm is empty), and returns the sum and how many matched.
func RSSOf(pids []int, comm string) (bytes int64, n int) {
	for _, p := range pids {
		if comm != "" {
			c, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "comm"))
			if err != nil || strings.TrimSpace(string(c)) != comm {
				continue
			}
		}
		if rss := RSSOfPID(p); rss > 0 {
			bytes += rss
			n++
		}
	}
	return bytes, n
}

// PSSOf sums the proportional set size (Pss of /proc/PID/smaps_rollup) of
// the pids: shared pages (the agent binary's text) are split among the
// processes mapping them, so the sum over many sandboxes is what they
// really cost, unlike RSS which counts shared pages once per process.
func PSSOf(pids []int) int64 {
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "smaps_rollup"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				total += kb * 1024
				break
			}
		}
	}
	return total
}

// RSSByName sums the resident set (VmRSS) of every process whose command
// name (/proc/PID/comm) is name, and returns the sum and the count.
func RSSByName(name string) (bytes int64, n int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if rss := rssOf(e.Name()); rss > 0 {
			bytes += rss
			n++
		}
	}
	return bytes, n
}

// RSSOfPID is the VmRSS of one process, 0 if it is gone.
func RSSOfPID(pid int) int64 { return rssOf(strconv.Itoa(pid)) }

func rssOf(pid string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// CgroupMemory sums the memory charged to the sandboxes' cgroups (sbx/<id>
// under the v1 memory controller, or the v2 hierarchy): their processes'
// memory plus the page cache and kernel memory they caused. It returns
// how many of the ids had a readable cgroup.
func CgroupMemory(ids []string) (total int64, found int) {
	for _, id := range ids {
		for _, p := range []string{
			filepath.Join("/sys/fs/cgroup/memory/sbx", id, "memory.usage_in_bytes"),
			filepath.Join("/sys/fs/cgroup/sbx", id, "memory.current"),
		} {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err == nil {
				total += v
				found++
				break
			}
		}
	}
	return total, found
}

// LoadAvg is the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// CPUModel is the first "model name" of /proc/cpuinfo.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

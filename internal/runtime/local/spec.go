package local

import (
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Paths inside every sandbox.
const (
	// AgentPathInSandbox is where the agent binary is bind-mounted read-only.
	AgentPathInSandbox = "/.sbx/bin/sbx-agent"
	// StateDirInSandbox is where the agent's state dir is bind-mounted.
	StateDirInSandbox = "/.sbx/state"
)

// ociVersion is the spec version we write: crun 1.8 and runc 1.1 (Debian
// 12) refuse versions newer than they know, and we use nothing newer.
const ociVersion = "1.0.2"

// defaultCaps is the capability set container engines give by default
// (Docker's 14) but CAP_NET_RAW, as in gVisor and Kubernetes' restricted
// pod profile: raw and packet sockets would let a sandbox see what the
// bridge floods to every port (broadcasts, frames for a sandbox that just
// went). With user namespaces it would count for nothing anyway: a
// sandbox's network namespace is not its user namespace's (netnsFirst).
// No CAP_SYS_ADMIN, no CAP_NET_ADMIN.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// maskedPaths and readonlyPaths are Docker's.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// specInput is what buildSpec needs of one sandbox.
type specInput struct {
	id        string
	rootfs    string // host path of the mounted overlay
	agentPath string // host path of the agent binary
	stateDir  string // host path of the agent's state dir
	cgroups   string // linux.cgroupsPath
	res       sandbox.Resources
	swap      bool   // whether the host accounts swap (memory.memsw / memory.swap.max)
	nofile    uint64 // the RLIMIT_NOFILE hard limit we may grant
	// uidBase, when not 0, puts the sandbox in a user namespace of its own
	// mapping its ids 0..65535 to uidBase.. on the host (userns.go).
	uidBase uint32
	// netnsByPath: the sandbox joins a network namespace made before it
	// (netnsFirst), which its user namespace then does not own.
	netnsByPath bool
	// sysfs, when set, is the host path of a sysfs mounted for the
	// sandbox's network namespace (sysfsMount), bound at /sys.
	sysfs string
}

// buildSpec returns the OCI spec of a sandbox whose PID 1 is the agent.
func buildSpec(in specInput) *specs.Spec {
	caps := append([]string(nil), defaultCaps...)
	s := &specs.Spec{
		Version:  ociVersion,
		Hostname: in.id,
		Root:     &specs.Root{Path: in.rootfs},
		Process: &specs.Process{
			Args: []string{AgentPathInSandbox, "--state-dir", StateDirInSandbox},
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:  "/",
			User: specs.User{UID: 0, GID: 0},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
			Rlimits:         sandboxRlimits(in.nofile),
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: AgentPathInSandbox, Type: "bind", Source: in.agentPath, Options: []string{"bind", "ro", "nosuid", "nodev"}},
			{Destination: StateDirInSandbox, Type: "bind", Source: in.stateDir, Options: []string{"bind", "rw", "nosuid", "nodev", "noexec"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: in.cgroups,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources:     resources(in.res, in.swap),
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			Seccomp:       seccompProfile(),
		},
	}
	if in.uidBase != 0 {
		userns(s, in.uidBase, in.netnsByPath)
	}
	if in.sysfs != "" {
		for i, m := range s.Mounts {
			if m.Destination == "/sys" {
				s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: in.sysfs,
					Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}
			}
		}
	}
	return s
}

// userns puts the sandbox of s in a user namespace of its own whose ids
// 0..65535 are base.. on the host. The OCI runtime makes it from the
// mappings (crun 1.8 and runc 1.1 both do), first, so that every other
// namespace it makes is owned by it; the idmapped layers of the rootfs use
// another namespace with the same mapping (userns.go), which is all an
// idmapped mount needs.
func userns(s *specs.Spec, base uint32, netnsByPath bool) {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: usernsSize}}
	s.Linux.UIDMappings, s.Linux.GIDMappings = m, m
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	if !netnsByPath {
		return
	}
	// sysfs can only be mounted by the user namespace that owns the
	// network namespace, which a namespace made before the container
	// (netnsFirst) is not: the sandbox gets an empty /sys rather than the
	// host's, with room for the cgroup mount point under it, unless sbx
	// mounted one for it (specInput.sysfs; all but gVisor).
	for i, m := range s.Mounts {
		if m.Destination == "/sys" {
			s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "noexec", "nodev", "mode=755", "size=64k"}}
		}
	}
}

// resources turns sandbox limits into cgroup settings. The device cgroup
// allows only the nodes the runtime creates in /dev (plus mknod, as Docker
// does; the nodes are useless without an allow rule).
func resources(r sandbox.Resources, swap bool) *specs.LinuxResources {
	period := uint64(100_000)
	quota := r.CPUMillis * int64(period) / 1000
	mem := r.MemoryBytes
	out := &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Period: &period, Quota: &quota},
		Memory: &specs.LinuxMemory{Limit: &mem},
		Pids:   &specs.LinuxPids{Limit: &r.Pids},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			// A nil major or minor is the wildcard.
			{Allow: true, Type: "c", Access: "m"},
			{Allow: true, Type: "b", Access: "m"},
			dev(1, 3), dev(1, 5), dev(1, 7), dev(1, 8), dev(1, 9), // null zero full random urandom
			dev(5, 0), dev(5, 1), dev(5, 2), // tty console ptmx
			{Allow: true, Type: "c", Major: i64(136), Access: "rwm"}, // /dev/pts/*
		},
	}
	if swap {
		// Swap limit = memory limit: no swapping beyond the limit.
		out.Memory.Swap = &mem
	}
	return out
}

func dev(major, minor int64) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
}

func i64(v int64) *int64 { return &v }

// unlimited is RLIM_INFINITY.
const unlimited = ^uint64(0)

// rlimitDefaults are the limits every sandbox starts with (its agent, so
// its main command and execs), whatever limits the server was started
// with, except that no hard limit exceeds the server's own (the runtime
// cannot raise one without CAP_SYS_RESOURCE): Debian's defaults for
// interactive logins, with no core files (they would fill the sandbox's
// disk; `ulimit -c` can raise the soft limit), no real-time priority, and
// the per-user counters (processes, pending signals) unlimited: without a
// user namespace (runsc, --userns=off) sandbox uids are host uids, so
// those counters are shared by every sandbox running as the same uid, and
// a low one would let one sandbox's processes stop another's forks. The
// pids and memory cgroups bound each sandbox instead.
var rlimitDefaults = []struct {
	typ        string
	res        int
	soft, hard uint64
}{
	{"RLIMIT_CORE", unix.RLIMIT_CORE, 0, unlimited},
	{"RLIMIT_STACK", unix.RLIMIT_STACK, 8 << 20, unlimited},
	{"RLIMIT_MEMLOCK", unix.RLIMIT_MEMLOCK, 8 << 20, 8 << 20},
	{"RLIMIT_MSGQUEUE", unix.RLIMIT_MSGQUEUE, 819200, 819200},
	{"RLIMIT_NPROC", unix.RLIMIT_NPROC, unlimited, unlimited},
	{"RLIMIT_SIGPENDING", unix.RLIMIT_SIGPENDING, unlimited, unlimited},
	{"RLIMIT_NICE", unix.RLIMIT_NICE, 0, 0},
	{"RLIMIT_RTPRIO", unix.RLIMIT_RTPRIO, 0, 0},
	{"RLIMIT_RTTIME", unix.RLIMIT_RTTIME, unlimited, unlimited},
	{"RLIMIT_CPU", unix.RLIMIT_CPU, unlimited, unlimited},
	{"RLIMIT_FSIZE", unix.RLIMIT_FSIZE, unlimited, unlimited},
	{"RLIMIT_DATA", unix.RLIMIT_DATA, unlimited, unlimited},
	{"RLIMIT_AS", unix.RLIMIT_AS, unlimited, unlimited},
	{"RLIMIT_RSS", unix.RLIMIT_RSS, unlimited, unlimited},
	{"RLIMIT_LOCKS", unix.RLIMIT_LOCKS, unlimited, unlimited},
}

// hostHardLimits are this process's hard limits, by resource, read once.
var hostHardLimits = sync.OnceValue(func() map[int]uint64 {
	m := map[int]uint64{}
	for _, d := range rlimitDefaults {
		var rl unix.Rlimit
		if unix.Getrlimit(d.res, &rl) == nil {
			m[d.res] = rl.Max
		}
	}
	return m
})

// sandboxRlimits are the OCI rlimits of a sandbox: rlimitDefaults within
// this process's hard limits, and RLIMIT_NOFILE at nofile.
func sandboxRlimits(nofile uint64) []specs.POSIXRlimit {
	out := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}}
	hard := hostHardLimits()
	for _, d := range rlimitDefaults {
		h, ok := hard[d.res]
		if !ok {
			continue // unknown to this kernel: leave it as inherited
		}
		rl := specs.POSIXRlimit{Type: d.typ, Hard: min(d.hard, h), Soft: min(d.soft, h)}
		out = append(out, rl)
	}
	return out
}

// nofileLimit is the RLIMIT_NOFILE hard limit this process has, capped at
// the usual container default of 1Mi.
func nofileLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	return min(rl.Max, 1<<20), nil
}

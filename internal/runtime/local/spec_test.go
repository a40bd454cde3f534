package local

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestBuildSpec(t *testing.T) {
	s := buildSpec(specInput{
		id: "box-1", rootfs: "/r", agentPath: "/a", stateDir: "/s", cgroups: "/sbx/box-1",
		res: sandbox.Resources{CPUMillis: 1500, MemoryBytes: 64 << 20, Pids: 100}, swap: true, nofile: 20000,
	})
	if s.Hostname != "box-1" || s.Root.Path != "/r" || s.Linux.CgroupsPath != "/sbx/box-1" {
		t.Errorf("hostname %q root %q cgroups %q", s.Hostname, s.Root.Path, s.Linux.CgroupsPath)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.UTSNamespace, specs.IPCNamespace, specs.CgroupNamespace} {
		if !slices.Contains(ns, want) {
			t.Errorf("namespace %s missing", want)
		}
	}
	if slices.Contains(ns, specs.UserNamespace) {
		t.Errorf("unexpected user namespace")
	}
	caps := s.Process.Capabilities.Bounding
	if len(caps) != 13 || slices.Contains(caps, "CAP_SYS_ADMIN") || slices.Contains(caps, "CAP_NET_ADMIN") || slices.Contains(caps, "CAP_NET_RAW") {
		t.Errorf("capabilities %v", caps)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privileges not set")
	}
	r := s.Linux.Resources
	if *r.CPU.Quota != 150_000 || *r.CPU.Period != 100_000 || *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 || *r.Pids.Limit != 100 {
		t.Errorf("resources %+v %+v %+v", r.CPU, r.Memory, r.Pids)
	}
	if rl := s.Process.Rlimits[0]; rl.Type != "RLIMIT_NOFILE" || rl.Hard != 20000 {
		t.Errorf("rlimit %+v", rl)
	}
	got := map[string]specs.POSIXRlimit{}
	for _, rl := range s.Process.Rlimits {
		if rl.Soft > rl.Hard {
			t.Errorf("%s: soft %d above hard %d", rl.Type, rl.Soft, rl.Hard)
		}
		got[rl.Type] = rl
	}
	if got["RLIMIT_CORE"].Soft != 0 || got["RLIMIT_RTPRIO"].Hard != 0 || got["RLIMIT_NICE"].Hard != 0 || len(got) != 1+len(rlimitDefaults) {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
	for _, d := range rlimitDefaults {
		if h := hostHardLimits()[d.res]; got[d.typ].Hard > h {
			t.Errorf("%s: hard %d above the server's %d", d.typ, got[d.typ].Hard, h)
		}
	}
	if s.Process.Args[0] != AgentPathInSandbox {
		t.Errorf("PID 1 is %v, want the agent", s.Process.Args)
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") || !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") {
		t.Error("masked or read-only paths missing")
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow {
		t.Error("seccomp profile missing")
	}
}

func TestNofileLimitWithinHardLimit(t *testing.T) {
	n, err := nofileLimit()
	if err != nil || n == 0 || n > 1<<20 {
		t.Errorf("nofileLimit() = %d, %v", n, err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"relative root": {Root: "rel", AgentPath: "/bin/true"},
		"long root":     {Root: "/" + string(make([]byte, 80)), AgentPath: "/bin/true"},
		"bad runtime":   {Root: "/tmp/x", Runtime: "docker", AgentPath: "/bin/true"},
		"no agent":      {Root: "/tmp/x"},
		"bad parent":    {Root: "/tmp/x", AgentPath: "/bin/true", CgroupParent: "../x"},
	} {
		if err := cfg.setDefaults(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, r := range []sandbox.Resources{{CPUMillis: -1}, {MemoryBytes: 1}, {Pids: 1}, {Pids: -5}} {
		if err := checkResources(r); err == nil {
			t.Errorf("checkResources(%+v): no error", r)
		}
	}
	if err := checkRuntimeResources("runsc", sandbox.Resources{Pids: 64}); !errors.Is(err, sandbox.ErrInvalidArgument) {
		t.Errorf("runsc with 64 pids: %v, want InvalidArgument", err)
	}
	if err := checkRuntimeResources("crun", sandbox.Resources{Pids: 64}); err != nil {
		t.Errorf("crun with 64 pids: %v", err)
	}
	for _, id := range []string{"", "-a", "a/b", "a b", string(make([]byte, 64))} {
		if validID(id) == nil {
			t.Errorf("validID(%q) accepted", id)
		}
	}
}

func TestDetectCgroups(t *testing.T) {
	m, err := detectCgroups()
	if err != nil {
		t.Skip("no cgroups mounted: ", err)
	}
	if m.layout == 0 || len(m.dirs) == 0 {
		t.Errorf("detectCgroups() = %+v", m)
	}
}

package local

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in every sandbox. The profile is a deny
// list in the spirit of Docker's default: everything a normal program needs
// stays allowed; what is left out reaches the kernel's most exposed surfaces
// (keys, BPF, perf, modules, kexec, handles, userfaultfd, io_uring, the new
// mount API, clocks, swap, reboot) or is already useless without
// CAP_SYS_ADMIN (mount, pivot_root) and is denied twice on purpose. ptrace
// stays allowed: since Linux 4.8 seccomp cannot be bypassed with it.
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
	"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
	"get_kernel_syms", "init_module", "io_uring_enter",
	"io_uring_register", "io_uring_setup", "ioperm", "iopl", "kexec_file_load",
	"kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr",
	"move_mount", "nfsservctl", "open_by_handle_at", "open_tree",
	"perf_event_open", "pivot_root", "query_module", "quotactl", "quotactl_fd",
	"reboot", "request_key", "setns", "settimeofday", "stime",
	"swapoff", "swapon", "_sysctl", "sysfs", "syslog", "umount", "umount2",
	"uselib", "userfaultfd", "ustat", "vm86", "vm86old",
}

// namespaceFlags are the clone/unshare flags that make new namespaces.
var namespaceFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
	unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME,
}

// seccompProfile returns the sandbox's seccomp profile.
func seccompProfile() *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: seccompArches(),
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &eperm},
			// clone3 passes its flags in a struct seccomp cannot read; ENOSYS
			// makes libc fall back to clone, whose flags it can.
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		},
	}
	// No new namespaces: user namespaces in particular would hand a
	// sandbox a full capability set over them. Each flag is its own rule
	// (rules are OR-ed, a rule's args AND-ed). The flags are argument 0 of
	// both calls on amd64 and arm64 (s390 alone swaps clone's first two).
	for _, f := range namespaceFlags {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names:    []string{"unshare", "clone"},
			Action:   specs.ActErrno,
			ErrnoRet: &eperm,
			Args:     []specs.LinuxSeccompArg{{Index: 0, Value: f, ValueTwo: f, Op: specs.OpMaskedEqual}},
		})
	}
	return s
}

func seccompArches() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	}
	return nil
}

// seccompBPFAnnotation makes crun load the base64 BPF program it holds
// instead of compiling the spec's seccomp profile (crun's
// docs/crun.1.md; crun 0.17 and later).
const seccompBPFAnnotation = "run.oci.seccomp_bpf_data"

// maxSeccompBPF is the largest filter the kernel takes: BPF_MAXINSNS
// instructions of 8 bytes.
const maxSeccompBPF = 4096 * 8

// useSeccompBPF replaces spec's seccomp profile by the BPF program crun
// compiled from that same profile for an earlier sandbox, once there is
// one (learnSeccompBPF): crun otherwise compiles the profile with
// libseccomp on every run. Only crun reads the annotation; runc and runsc
// always get the profile.
func (r *Runtime) useSeccompBPF(spec *specs.Spec) {
	bpf := r.seccompBPF.Load()
	if r.oci.name != "crun" || bpf == nil || spec.Linux == nil || spec.Linux.Seccomp == nil {
		return
	}
	spec.Linux.Seccomp = nil
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[seccompBPFAnnotation] = *bpf
}

// learnSeccompBPF keeps the BPF program crun compiled for container id,
// which it writes into its state dir (seccomp.bpf) next to its copy of the
// spec: the program it loaded into the container. It is kept only if that
// spec holds exactly the profile seccompProfile returns, so the cached
// program is the compiled form of the current profile by construction.
func (r *Runtime) learnSeccompBPF(id string) {
	if r.oci.name != "crun" || r.seccompBPF.Load() != nil {
		return
	}
	dir := filepath.Join(r.oci.root, id)
	js, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || len(js) > 1<<20 {
		return
	}
	var spec specs.Spec
	if json.Unmarshal(js, &spec) != nil || spec.Linux == nil || spec.Linux.Seccomp == nil ||
		spec.Annotations[seccompBPFAnnotation] != "" || !reflect.DeepEqual(spec.Linux.Seccomp, seccompProfile()) {
		return
	}
	bpf, err := os.ReadFile(filepath.Join(dir, "seccomp.bpf"))
	if err != nil || len(bpf) == 0 || len(bpf) > maxSeccompBPF || len(bpf)%8 != 0 {
		return
	}
	enc := base64.StdEncoding.EncodeToString(bpf)
	r.seccompBPF.CompareAndSwap(nil, &enc)
}

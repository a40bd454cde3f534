package sandbox

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Runtime runs sandboxes: the local OCI runtime on one machine, or
// Kubernetes. Every implementation passes internal/runtime/runtimetest.
//
// Errors are of the kinds in errors.go: NotFound for an unknown id,
// InvalidArgument for a bad Spec, Unavailable for a runtime that cannot be
// reached, FailedPrecondition for a sandbox in the wrong state.
type Runtime interface {
	// Create pulls the image if needed, sets up the sandbox's filesystem,
	// namespaces and cgroups, and starts the agent as its PID 1. It returns
	// once the agent answers. A failed or cancelled Create leaves nothing
	// behind.
	Create(ctx context.Context, spec Spec) (Info, error)
	// Start applies start through the agent (env, working dir, files) and
	// starts the main command, if any. It is called once per sandbox.
	Start(ctx context.Context, id string, start StartSpec) error
	// Agent returns a client of the sandbox's agent, for processes, files and
	// logs. The caller closes it.
	Agent(ctx context.Context, id string) (Agent, error)
	// Wait blocks until the sandbox's main command has exited, or until the
	// sandbox is gone, and returns how it ended. For an idle sandbox it
	// returns when the sandbox is stopped.
	Wait(ctx context.Context, id string) (ExitStatus, error)
	// Stop sends SIGTERM to the main command's process group (and every
	// process of the sandbox), then SIGKILL to all after grace. It is
	// idempotent.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Delete stops the sandbox if needed and removes everything it had: its
	// container, mounts, cgroups, network namespace and directories.
	// Deleting an unknown id returns NotFound.
	Delete(ctx context.Context, id string) error
	// List returns every sandbox this runtime has, including ones created by
	// an earlier process, so that a restarted server can re-attach.
	List(ctx context.Context) ([]Info, error)
}

// RuntimeStatus is what a runtime observes of a sandbox's container.
type RuntimeStatus string

// The runtime statuses.
const (
	// RuntimeCreated: set up, agent not yet answering.
	RuntimeCreated RuntimeStatus = "created"
	// RuntimeRunning: the agent is up.
	RuntimeRunning RuntimeStatus = "running"
	// RuntimeStopped: the container has exited; Delete cleans it up.
	RuntimeStopped RuntimeStatus = "stopped"
)

// Info is what a runtime knows of one sandbox.
type Info struct {
	ID        string
	Image     string
	Resources Resources
	Status    RuntimeStatus
	// PID is the host pid of the sandbox's PID 1, when known.
	PID       int
	CreatedAt time.Time
	// Exit is set when the main command has exited.
	Exit *ExitStatus
}

// Unwrapper is implemented by runtimes that wrap another one (such as a
// metrics wrapper), so that OptionalOf finds the optional interfaces of
// the runtime inside.
type Unwrapper interface {
	Unwrap() Runtime
}

// OptionalOf returns rt, or the first runtime it wraps (Unwrapper), that
// implements the optional interface T (Admitter, StatsReader, ...).
func OptionalOf[T any](rt Runtime) (T, bool) {
	for rt != nil {
		if t, ok := any(rt).(T); ok {
			return t, true
		}
		u, ok := rt.(Unwrapper)
		if !ok {
			break
		}
		rt = u.Unwrap()
	}
	var zero T
	return zero, false
}

// Admitter is implemented by runtimes that can tell up front that a create
// cannot succeed for lack of host resources (such as the disk that holds
// sandboxes): the server then refuses the create (RESOURCE_EXHAUSTED, with
// a retry delay) before recording anything. It is optional and must be
// cheap: it runs on every create.
type Admitter interface {
	Admit() error
}

// PortDialer is implemented by runtimes whose sandboxes the server can reach
// over TCP, for sbx's port proxy and port-forward. It is optional: a runtime
// without it cannot publish ports.
type PortDialer interface {
	// DialPort opens a TCP connection to port inside sandbox id. NotFound
	// if the sandbox has no network; Unavailable if nothing answers.
	DialPort(ctx context.Context, id string, port int) (net.Conn, error)
	// Address returns the sandbox's IPv4 address on the sandbox network,
	// if it has one.
	Address(id string) (netip.Addr, bool)
}

// StatsReader is implemented by runtimes that can report what a sandbox
// uses, for users sizing its limits or explaining an OOM kill. It is
// optional and must be cheap (a few file reads, no call into the sandbox):
// users may poll it every second.
type StatsReader interface {
	// Stats reads the usage and limits of running sandbox id. NotFound for
	// an unknown id; FailedPrecondition SANDBOX_NOT_RUNNING for one whose
	// container is not running.
	Stats(ctx context.Context, id string) (Stats, error)
}

// Stats is one reading of a sandbox's resource usage and limits, from its
// cgroups and its disk quota. Under gVisor (runsc) the sandbox's cgroup
// also holds gVisor's Sentry and gofer, which run on its behalf: CPU,
// memory and process counts include them, and the Sentry's own memory
// means a runsc sandbox reads higher than the same work under crun.
type Stats struct {
	// CPU is the CPU time (user + system) that all its processes used
	// since it started: cpuacct.usage (v1) or cpu.stat usage_usec (v2).
	CPU time.Duration
	// MemoryBytes is the memory charged to its cgroup now, page cache
	// included (files in /tmp or /dev/shm count until deleted):
	// memory.usage_in_bytes (v1) or memory.current (v2).
	MemoryBytes int64
	// MemoryPeakBytes is the highest MemoryBytes since it started:
	// memory.max_usage_in_bytes (v1) or memory.peak (v2, kernel 5.19 and
	// later); 0 if the kernel does not say.
	MemoryPeakBytes int64
	// MemoryLimitBytes is its memory limit (memory.limit_in_bytes or
	// memory.max); above it the OOM killer ends one of its processes.
	MemoryLimitBytes int64
	// OOMKills counts the processes the OOM killer ended in it since it
	// started (oom_kill of memory.oom_control on v1, kernel 4.13 and
	// later, or of memory.events on v2); 0 if the kernel does not say.
	OOMKills int64
	// Pids is the number of its processes and threads now (pids.current);
	// PidsLimit their limit (pids.max).
	Pids      int64
	PidsLimit int64
	// DiskBytes is what its writable layer holds as its disk quota counts
	// it (the btrfs qgroup's referenced bytes). The filesystem updates it
	// when it commits, every ~30 s or after a sync in the sandbox, so it
	// can lag writes by that much. 0 when the runtime has no disk limits.
	DiskBytes int64
	// DiskLimitBytes is its disk limit; 0 when the runtime has no disk
	// limits.
	DiskLimitBytes int64
	// ReadAt is when these values were read.
	ReadAt time.Time
}

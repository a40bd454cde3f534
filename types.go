package sbx

import (
	"io/fs"
	"time"
)

// State is where a sandbox is in its lifecycle:
//
//	PENDING → CREATING → RUNNING → TERMINATING → COMPLETED | FAILED | TERMINATED
type State string

// The states.
const (
	StatePending     State = "PENDING"
	StateCreating    State = "CREATING"
	StateRunning     State = "RUNNING"
	StateTerminating State = "TERMINATING"
	// StateCompleted: the main command exited 0.
	StateCompleted State = "COMPLETED"
	// StateFailed: the main command exited non-zero, or the sandbox could not start.
	StateFailed State = "FAILED"
	// StateTerminated: stopped by its user, its session or its lifetime.
	StateTerminated State = "TERMINATED"
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateCreating, StateRunning, StateTerminating, StateCompleted, StateFailed, StateTerminated}

// Terminal reports whether s is an end state.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateTerminated
}

// Resources are the limits of one sandbox. Zero fields mean the server's
// default. A Resources value is itself a RunOption.
type Resources struct {
	// CPUMillis is CPU in thousandths of a core (1500 = one and a half cores).
	CPUMillis int64
	// MemoryBytes is the memory limit; the sandbox is OOM-killed above it.
	MemoryBytes int64
	// Pids is the maximum number of processes and threads.
	Pids int64
	// DiskBytes bounds the sandbox's writable root filesystem, which holds
	// every file written in it or through WriteFile; writes past it fail
	// (ENOSPC/EDQUOT inside, ErrResourceExhausted with reason
	// DISK_LIMIT_REACHED through the API).
	DiskBytes int64
}

// Transition is one recorded state change.
type Transition struct {
	State  State
	Reason string
	At     time.Time
}

// Info is what the server reports about a sandbox.
type Info struct {
	ID         string
	SessionID  string
	Image      string
	Command    []string
	Env        map[string]string
	WorkingDir string
	User       string
	Tags       []string
	Resources  Resources
	// Lifetime is the sandbox's max lifetime.
	Lifetime time.Duration
	// Network is the effective network policy (after session defaults).
	Network Network
	// Secrets are the stored secrets injected as env vars (after session
	// defaults), EnvVar filled in; their values are never reported.
	Secrets []Secret
	// Ports are the published ports with their URLs.
	Ports []ExposedPort
	// Address is the sandbox's IPv4 address on the sandbox network, once
	// RUNNING; empty on a server without sandbox networking.
	Address string

	State State
	// Reason says why the sandbox is in State ("main command exited", "lifetime", …).
	Reason string
	// Exited is set once the main command has exited; ExitCode is then valid.
	Exited   bool
	ExitCode int
	// Signal names the signal that ended the main command, if any.
	Signal string
	// OOMKilled is set when the kernel's OOM killer ended the main command.
	OOMKilled bool
	// RequestID is the idempotency key the sandbox was created with.
	RequestID string

	CreatedAt   time.Time
	StartedAt   time.Time // zero until RUNNING
	EndedAt     time.Time // zero until terminal
	ExpiresAt   time.Time
	Transitions []Transition
}

// FileInfo describes one path inside a sandbox.
type FileInfo struct {
	Name    string
	Path    string
	Size    int64
	Mode    fs.FileMode
	ModTime time.Time
	IsDir   bool
	// Target is a symlink's target.
	Target string
}

package sandbox

import (
	"os"
	"time"
)

// DefaultImage is the image a sandbox runs when the caller names none.
const DefaultImage = "python:3.11"

// Resources are the cgroup limits of one sandbox. Zero means "the configured
// default".
type Resources struct {
	// CPUMillis is CPU time in thousandths of a core (1000 = one core).
	CPUMillis int64
	// MemoryBytes is the memory limit; the sandbox is OOM-killed above it.
	MemoryBytes int64
	// Pids is the maximum number of processes and threads.
	Pids int64
}

// Spec is what a runtime needs to create the container of a sandbox: the
// parts that cannot change after start. Everything request-specific lives in
// StartSpec, so that a pre-started (warm) sandbox can serve any request for the
// same Spec.
type Spec struct {
	// ID is the sandbox id; also the container's hostname.
	ID string
	// Image is an image reference as a user writes it ("python:3.11").
	Image string
	// Resources are the cgroup limits.
	Resources Resources
}

// File is a file written into the sandbox before its main command starts.
type File struct {
	// Path is absolute inside the sandbox.
	Path string
	// Content is the whole file.
	Content []byte
	// Mode is the permission bits; 0 means 0444 (mounted files are read-only).
	Mode os.FileMode
}

// StartSpec is the request-specific part of a sandbox, applied by the agent
// after the container is up: environment, working directory, files and the
// main command.
type StartSpec struct {
	// Command is the main command (argv). Empty keeps the sandbox idle until
	// it is stopped.
	Command []string
	// Env is added to the image's environment; these values win.
	Env map[string]string
	// WorkingDir is the main command's and the default exec working dir;
	// empty means the image's, or "/".
	WorkingDir string
	// User is "uid", "uid:gid" or a name from the image's /etc/passwd; empty
	// means the image's user, or root.
	User string
	// Files are written before the main command starts.
	Files []File
}

// ImageConfig is what an image says about how to run it.
type ImageConfig struct {
	Env        []string // "K=V"
	WorkingDir string
	User       string
	Entrypoint []string
	Cmd        []string
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when killed by a signal.
	Code int
	// Signal names the signal that killed the process ("SIGKILL"), if any.
	Signal string
	// OOMKilled is set when the kernel's OOM killer ended it.
	OOMKilled bool
	// TimedOut is set when a per-exec timeout ended it.
	TimedOut bool
	// At is when it ended.
	At time.Time
}

package sandbox

import (
	"context"
	"io"
	"os"
	"time"
)

// Agent is a client of the sbx-agent inside one sandbox: processes, files and
// the main command's log. Paths are absolute paths inside the sandbox; the
// agent resolves them there, so no host path is ever touched.
type Agent interface {
	// Exec starts a process and returns its event stream. The stream starts
	// with the Started event.
	Exec(ctx context.Context, spec ExecSpec) (Process, error)
	// Attach reconnects to a running (or recently exited) process by exec id:
	// the stream replays the output the agent still holds, then follows.
	Attach(ctx context.Context, execID string) (Process, error)
	// Processes lists the processes started by Exec that still run or ended
	// recently.
	Processes(ctx context.Context) ([]ProcessInfo, error)
	// WriteStdin writes data to a process's stdin (ExecSpec.Stdin must be set).
	WriteStdin(ctx context.Context, execID string, data []byte) error
	// CloseStdin closes a process's stdin, so that it reads EOF.
	CloseStdin(ctx context.Context, execID string) error
	// Signal sends a signal (e.g. "SIGTERM", "TERM" or "15") to a process's group.
	Signal(ctx context.Context, execID string, signal string) error
	// Resize sets the window size of a process's PTY.
	Resize(ctx context.Context, execID string, rows, cols uint16) error

	// ReadFile streams a file's content. The caller closes the reader.
	ReadFile(ctx context.Context, path string) (io.ReadCloser, error)
	// WriteFile streams r into path atomically: the file is replaced only when
	// all of r was written; on any error the old file (if any) stays.
	// Missing parent directories are created.
	WriteFile(ctx context.Context, path string, mode os.FileMode, r io.Reader) error
	// Stat describes one path (without following a final symlink).
	Stat(ctx context.Context, path string) (FileInfo, error)
	// ListDir lists a directory's entries, sorted by name.
	ListDir(ctx context.Context, path string) ([]FileInfo, error)
	// MkdirAll creates a directory and its parents.
	MkdirAll(ctx context.Context, path string, mode os.FileMode) error
	// Remove removes a file or an empty directory, or a whole tree when recursive.
	Remove(ctx context.Context, path string, recursive bool) error
	// Rename moves from to to (replacing a file at to).
	Rename(ctx context.Context, from, to string) error

	// Logs streams the main command's output.
	Logs(ctx context.Context, opts LogOptions) (OutputStream, error)

	// Close releases the connection; running processes are not affected.
	Close() error
}

// ExecSpec describes a process to run in a sandbox.
type ExecSpec struct {
	// Command is argv; Command[0] is looked up in PATH.
	Command []string
	// Env is added to the sandbox's environment (from StartSpec); these win.
	Env map[string]string
	// WorkingDir; empty means the sandbox's working dir.
	WorkingDir string
	// User; empty means the sandbox's user.
	User string
	// Stdin keeps stdin open for WriteStdin; otherwise it reads EOF at once.
	Stdin bool
	// TTY runs the process on a pseudo-terminal of Rows x Cols; stdout then
	// carries the terminal output and there is no stderr.
	TTY        bool
	Rows, Cols uint16
	// Timeout kills the process group with SIGKILL after this long; zero is none.
	Timeout time.Duration
	// Tag is an optional caller-chosen label reported by Processes.
	Tag string
}

// Stream names an output stream.
type Stream int

// The streams.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

// EventKind is the kind of an ExecEvent.
type EventKind int

// The event kinds.
const (
	EventStarted EventKind = iota + 1
	EventOutput
	EventExit
)

// ExecEvent is one event of a process's stream.
type ExecEvent struct {
	Kind EventKind
	// ExecID and PID are set on EventStarted.
	ExecID string
	PID    int
	// Stream and Data are set on EventOutput.
	Stream Stream
	Data   []byte
	// Exit is set on EventExit, the last event.
	Exit *ExitStatus
}

// Process is the event stream of one process.
type Process interface {
	// ID is the exec id.
	ID() string
	// Recv returns the next event; after the EventExit event it returns io.EOF.
	Recv() (ExecEvent, error)
	// Close stops receiving; the process keeps running.
	Close() error
}

// ProcessInfo describes a process started by Exec.
type ProcessInfo struct {
	ExecID  string
	PID     int
	Command []string
	Tag     string
	TTY     bool
	Started time.Time
	// Exit is set once it ended.
	Exit *ExitStatus
}

// FileInfo describes one path in a sandbox.
type FileInfo struct {
	Name    string
	Path    string
	Size    int64
	Mode    os.FileMode
	ModTime time.Time
	IsDir   bool
	// Symlink target, when Mode has os.ModeSymlink.
	Target string
}

// LogOptions selects part of the main command's log.
type LogOptions struct {
	// Tail is the number of last lines to start with; 0 means all kept.
	Tail int
	// Follow keeps the stream open for new output until the main command
	// exits or the context ends.
	Follow bool
	// Since, when not zero, starts with the first line read at or after it
	// (with Tail, the later start wins).
	Since time.Time
	// Timestamps asks for Output.At: each chunk then holds output of one
	// write of the main command (or part of one).
	Timestamps bool
}

// Output is one chunk of a log.
type Output struct {
	Stream Stream
	Data   []byte
	// At is when the agent read Data's first byte, with
	// LogOptions.Timestamps; zero when not asked or unknown.
	At time.Time
}

// OutputStream is a stream of log chunks.
type OutputStream interface {
	// Recv returns the next chunk, or io.EOF at the end.
	Recv() (Output, error)
	Close() error
}

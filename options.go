package sbx

import (
	"io/fs"
	"time"
)

// RunOption configures Client.Run, Session.Sandbox and SandboxDefaults-based
// creates.
type RunOption interface{ applyRun(*runConfig) }

// ExecOption configures Sandbox.Exec.
type ExecOption interface{ applyExec(*execConfig) }

// RunExecOption is an option that fits both Run (the whole sandbox) and
// Exec (one process): Env, WorkingDir, User.
type RunExecOption interface {
	RunOption
	ExecOption
}

type runConfig struct {
	image      string
	command    []string
	env        map[string]string
	workingDir string
	user       string
	tags       []string
	lifetime   time.Duration
	resources  Resources
	files      []mountedFile
	requestID  string
	network    *Network
	ports      []Port
	secrets    []Secret
}

type mountedFile struct {
	path    string
	content []byte
	mode    fs.FileMode
}

type execConfig struct {
	env         map[string]string
	workingDir  string
	user        string
	stdin       bool
	tty         bool
	rows, cols  uint16
	timeout     time.Duration
	check       bool
	tag         string
	outputLimit int64
}

type runOpt func(*runConfig)

func (f runOpt) applyRun(c *runConfig) { f(c) }

type execOpt func(*execConfig)

func (f execOpt) applyExec(c *execConfig) { f(c) }

// bothOpt is an option that fits Run and Exec.
type bothOpt struct {
	run  func(*runConfig)
	exec func(*execConfig)
}

func (o bothOpt) applyRun(c *runConfig)   { o.run(c) }
func (o bothOpt) applyExec(c *execConfig) { o.exec(c) }

// Image sets the sandbox's image reference ("python:3.11",
// "127.0.0.1:5000/busybox:latest"). Unset means the session's default, else
// the server's (python:3.11).
func Image(ref string) RunOption { return runOpt(func(c *runConfig) { c.image = ref }) }

// Command sets the sandbox's main command. The sandbox ends when it exits
// (COMPLETED on 0, FAILED otherwise). Without one the sandbox idles until it
// is stopped.
func Command(argv ...string) RunOption {
	return runOpt(func(c *runConfig) { c.command = append([]string(nil), argv...) })
}

// Env adds environment variables: to the sandbox (for Run) or to one
// process (for Exec). Several Env options merge; later ones win.
func Env(vars map[string]string) RunExecOption {
	merge := func(dst *map[string]string) {
		if *dst == nil {
			*dst = make(map[string]string, len(vars))
		}
		for k, v := range vars {
			(*dst)[k] = v
		}
	}
	return bothOpt{
		run:  func(c *runConfig) { merge(&c.env) },
		exec: func(c *execConfig) { merge(&c.env) },
	}
}

// WorkingDir sets the working directory (absolute): of the sandbox's main
// command and default for its execs (for Run), or of one process (for Exec).
func WorkingDir(dir string) RunExecOption {
	return bothOpt{
		run:  func(c *runConfig) { c.workingDir = dir },
		exec: func(c *execConfig) { c.workingDir = dir },
	}
}

// User sets the user ("uid", "uid:gid" or a name from the image) that the
// sandbox's commands (for Run) or one process (for Exec) run as.
func User(user string) RunExecOption {
	return bothOpt{
		run:  func(c *runConfig) { c.user = user },
		exec: func(c *execConfig) { c.user = user },
	}
}

// Tags adds tags, for List filtering.
func Tags(tags ...string) RunOption {
	return runOpt(func(c *runConfig) { c.tags = append(c.tags, tags...) })
}

// Lifetime sets how long the sandbox may live before the server stops it
// (it then ends TERMINATED with reason "lifetime"). Whole seconds; unset
// means the session's default, else the server's.
func Lifetime(d time.Duration) RunOption { return runOpt(func(c *runConfig) { c.lifetime = d }) }

func (r Resources) applyRun(c *runConfig) { c.resources = r }

// DiskLimit bounds the sandbox's writable root filesystem to bytes (see
// Resources.DiskBytes); a Resources option given after it replaces it.
func DiskLimit(bytes int64) RunOption {
	return runOpt(func(c *runConfig) { c.resources.DiskBytes = bytes })
}

// MountedFile writes a file (read-only, mode 0444) into the sandbox before
// its main command starts.
func MountedFile(path string, content []byte) RunOption {
	return MountedFileMode(path, content, 0)
}

// MountedFileMode is MountedFile with permission bits (0 means 0444).
func MountedFileMode(path string, content []byte, mode fs.FileMode) RunOption {
	return runOpt(func(c *runConfig) {
		c.files = append(c.files, mountedFile{path: path, content: content, mode: mode})
	})
}

// RequestID makes Run idempotent: a retried Run with the same id returns the
// sandbox that the first one created.
func RequestID(id string) RunOption { return runOpt(func(c *runConfig) { c.requestID = id }) }

// Check makes Process.Wait and Process.Result return an *ExitError, carrying
// the Result, when the command exits non-zero.
func Check() ExecOption { return execOpt(func(c *execConfig) { c.check = true }) }

// Stdin keeps the process's stdin open: write to Process.Stdin and close it
// to send EOF. Without it the process reads EOF at once.
func Stdin() ExecOption { return execOpt(func(c *execConfig) { c.stdin = true }) }

// TTY runs the process on a pseudo-terminal of rows x cols. Stdout then
// carries the terminal's output and Stderr stays empty; use Process.Resize
// when the window changes.
func TTY(rows, cols uint16) ExecOption {
	return execOpt(func(c *execConfig) { c.tty, c.rows, c.cols = true, rows, cols })
}

// Timeout kills the process (SIGKILL to its group) after d, rounded up to
// whole seconds; Result.TimedOut is then set.
func Timeout(d time.Duration) ExecOption { return execOpt(func(c *execConfig) { c.timeout = d }) }

// ExecTag labels the process, for listing.
func ExecTag(tag string) ExecOption { return execOpt(func(c *execConfig) { c.tag = tag }) }

// OutputLimit stops forwarding output after n bytes (stdout and stderr
// together); Result.Truncated is then set. 0 means the server's cap.
func OutputLimit(n int64) ExecOption { return execOpt(func(c *execConfig) { c.outputLimit = n }) }

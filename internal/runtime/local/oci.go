package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ociRuntime drives an OCI runtime binary (crun, runc, runsc) through its
// CLI, with its state under root so containers outlive us.
type ociRuntime struct {
	name string // "crun", "runc", "runsc"
	path string // binary
	root string // --root
	// flags are global flags given before the command (runsc's).
	flags []string
}

// args returns the global flags followed by args.
func (o *ociRuntime) args(args ...string) []string {
	out := append([]string{"--root", o.root}, o.flags...)
	return append(out, args...)
}

// output runs the runtime with args and returns its combined output (or only
// stdout with stdoutOnly).
func (o *ociRuntime) output(ctx context.Context, stdoutOnly bool, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, o.path, o.args(args...)...)
	ociCommands.RLock()
	defer ociCommands.RUnlock()
	if stdoutOnly {
		return cmd.Output()
	}
	return cmd.CombinedOutput()
}

// run creates and starts a detached container from bundle. Its stdio (the
// runtime's own errors, then the agent's stderr) goes to logPath, never to
// a pipe: a detached container would keep a pipe open and whoever waits for
// it to close would hang. extra are passed to PID 1 as descriptors 3 and
// on (--preserve-fds; not for runsc). It returns the container's PID 1.
func (o *ociRuntime) run(ctx context.Context, id, bundle, logPath string, extra ...*os.File) (int, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	pidFile := filepath.Join(bundle, "init.pid")
	// Not CommandContext: killing the runtime mid-create leaves a container
	// half made; Create's cleanup handles cancellation after run returns.
	args := []string{"run", "--detach", "--bundle", bundle, "--pid-file", pidFile}
	if len(extra) > 0 {
		args = append(args, "--preserve-fds", strconv.Itoa(len(extra)))
	}
	cmd := exec.Command(o.path, o.args(append(args, id)...)...)
	if o.runscSandboxNetwork() {
		cmd = runscRunCommand(o.path, cmd.Args[1:])
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = extra
	ociCommands.RLock()
	err = cmd.Run()
	ociCommands.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("%s run %s: %w: %s", o.name, id, err, tail(logPath, 2048))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("%s run %s: no pid file: %w", o.name, id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s run %s: bad pid file %q", o.name, id, b)
	}
	return pid, nil
}

// kill sends sig to the container's PID 1. A container that no longer runs
// is not an error.
func (o *ociRuntime) kill(ctx context.Context, id, sig string) error {
	out, err := o.output(ctx, false, "kill", id, sig)
	if err != nil && !notRunning(out) {
		return fmt.Errorf("%s kill %s %s: %w: %s", o.name, id, sig, err, bytes.TrimSpace(out))
	}
	return nil
}

// delete removes the container (killing it if needed) and its cgroups. An
// unknown container is not an error.
func (o *ociRuntime) delete(ctx context.Context, id string) error {
	out, err := o.output(ctx, false, "delete", "--force", id)
	if err != nil && o.name == "runsc" && o.brokenState(id) {
		// runsc cannot load it to delete it.
		return o.removeBrokenState(id)
	}
	if err != nil && !notRunning(out) {
		return fmt.Errorf("%s delete %s: %w: %s", o.name, id, err, bytes.TrimSpace(out))
	}
	if o.name == "runsc" {
		return o.removeStaleLock(id)
	}
	return nil
}

// list returns the ids of the containers in the runtime's state dir.
func (o *ociRuntime) list(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(o.root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Each container is a directory named by its id (crun, runc), or a
	// file <sandbox id>_sandbox:<container id>.state (runsc).
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if o.name == "runsc" {
			if _, c, ok := strings.Cut(strings.TrimSuffix(name, ".state"), "_sandbox:"); ok && strings.HasSuffix(name, ".state") && !e.IsDir() {
				name = c
			} else {
				continue
			}
		} else if !e.IsDir() {
			continue
		}
		if validID(name) == nil {
			ids = append(ids, name)
		}
	}
	return ids, nil
}

// notRunning reports whether a runtime's error output says the container
// does not exist or is not running: what idempotent kill and delete ignore.
func notRunning(out []byte) bool {
	s := strings.ToLower(string(out))
	for _, m := range []string{"does not exist", "not exist", "no such", "not running", "container not found", "process already finished", "no such process"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return strings.TrimSpace(string(b))
}

// newOCIRuntime returns the driver of the runtime name at path.
func newOCIRuntime(name, path, root string) *ociRuntime {
	o := &ociRuntime{name: name, path: path, root: root}
	if name == "runsc" {
		o.flags = runscFlags(false)
	}
	return o
}

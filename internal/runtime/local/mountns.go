package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// mountNSEnv marks the re-executed child of EnterMountNamespace.
const mountNSEnv = "SBX_PRIVATE_MOUNT_NS"

// EnterMountNamespace makes crun usable on a hybrid-cgroup host. crun 1.8
// refuses hybrid mode, but works in a mount namespace where the cgroup2 mount
// (/sys/fs/cgroup/unified) is gone; Go cannot unshare the mount namespace of
// a running multithreaded process, so the process re-executes itself in a new
// one. Call it first thing in main (and in TestMain), before any goroutine
// matters:
//
//	if code, reexeced, err := local.EnterMountNamespace("crun"); err != nil {
//		log.Fatal(err)
//	} else if reexeced {
//		os.Exit(code)
//	}
//
// In the child, a tmpfs of its own takes the cgroup2 mount's place (see
// cgroup2stub.go).
//
// In the parent it runs the child with the same args, env and stdio,
// forwards signals to it, and returns reexeced=true and the child's exit
// code once it ends. In the child (or when nothing is needed: another
// runtime than crun, a pure v1 or v2 host) it returns reexeced=false and
// the caller carries on. Mounts made by the child (sandbox overlays) live in
// its private namespace; containers keep their own copies, which is why a
// restarted server still re-attaches to them.
func EnterMountNamespace(runtimeName string) (exitCode int, reexeced bool, err error) {
	if os.Getenv(mountNSEnv) == "1" {
		// The child: the namespace is ours; drop the cgroup2 mount.
		m, err := detectCgroups()
		if err != nil {
			return 0, false, err
		}
		if m.layout == CgroupHybrid {
			if err := unix.Unmount(m.v2, unix.MNT_DETACH); err != nil {
				return 0, false, fmt.Errorf("unmount %s in the private mount namespace: %w", m.v2, err)
			}
			if err := mountCgroup2Stub(m.v2); err != nil {
				return 0, false, err
			}
		}
		return 0, false, nil
	}
	if runtimeName != "" && runtimeName != "crun" {
		return 0, false, nil
	}
	m, err := detectCgroups()
	if err != nil || m.layout != CgroupHybrid {
		return 0, false, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, false, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), mountNSEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Go makes the new namespace's mounts private (MS_REC|MS_PRIVATE) so
	// nothing the child mounts or unmounts propagates to the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, false, fmt.Errorf("re-execute %s in a private mount namespace (needed by crun on a hybrid cgroup host): %w", exe, err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, true, nil
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), true, nil
		}
		return exitErr.ExitCode(), true, nil
	default:
		return 0, false, err
	}
}

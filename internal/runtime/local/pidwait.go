package local

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waitExited waits until the process pid, started at start, has exited,
// for up to d or until ctx ends, and reports whether it has. It sleeps in
// Go's poller on a pidfd, which becomes readable when the process exits,
// instead of reading /proc/<pid>/stat every few milliseconds: a sandbox's
// life waits like this for its agent to answer (or die) and for its PID 1
// to go after SIGKILL. Where pidfds cannot be polled it falls back to
// polling.
func waitExited(ctx context.Context, pid int, start uint64, d time.Duration) bool {
	if pid <= 0 {
		return true
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == unix.ESRCH {
		return true
	}
	if err != nil {
		return pollExited(ctx, pid, start, d)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	// After the open: the pidfd is of the recorded process only if that
	// still runs now (its pid may have been reused).
	if !alive(pid, start) {
		return true
	}
	if err := f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return pollExited(ctx, pid, start, d) // not in the poller
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return pollExited(ctx, pid, start, d)
	}
	exited := false
	rc.Read(func(fd uintptr) bool {
		exited = pidfdReadable(int(fd))
		return exited
	})
	return exited || !alive(pid, start)
}

// pidfdReadable reports whether the pidfd says its process has exited.
func pidfdReadable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0
	}
}

// pollExited is waitExited by polling /proc.
func pollExited(ctx context.Context, pid int, start uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if !alive(pid, start) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleepBackoff(i)
	}
}

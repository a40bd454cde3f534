package agent

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// reaper owns every child status of the agent. As PID 1 the agent inherits
// every orphan of the sandbox, so one loop calls wait4(-1) and hands each
// status to the owner registered for that pid; orphans are simply reaped.
// Children are started through reaper.start (never os/exec), so no other
// Wait races with this loop for a status.
type reaper struct {
	mu     sync.Mutex
	owners map[int]func(syscall.WaitStatus)
	stop   chan struct{}
	// workload, if set, forks every child (workload.go).
	workload *workload
}

func newReaper() *reaper {
	return &reaper{owners: map[int]func(syscall.WaitStatus){}, stop: make(chan struct{})}
}

// run reaps on every SIGCHLD until close is called.
func (r *reaper) run() {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	r.reap() // children that exited before Notify
	for {
		select {
		case <-ch:
			r.reap()
		case <-r.stop:
			return
		}
	}
}

func (r *reaper) close() { close(r.stop) }

// reap collects every exited child. It holds mu so that a child cannot be
// reaped between its fork and the registration of its owner.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		if f, ok := r.owners[pid]; ok {
			delete(r.owners, pid)
			f(ws)
		}
	}
}

// start forks and execs a child and registers onExit for its status.
// onExit runs on the reaper's goroutine and must not block.
func (r *reaper) start(argv0 string, argv []string, attr *syscall.ProcAttr, onExit func(syscall.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fork := syscall.ForkExec
	if r.workload != nil {
		fork = r.workload.forkExec
	}
	pid, err := fork(argv0, argv, attr)
	if err != nil {
		return 0, err
	}
	r.owners[pid] = onExit
	return pid, nil
}

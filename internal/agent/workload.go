package agent

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/sbx-run/sbx/internal/osthread"
	"golang.org/x/sys/unix"
)

// WorkloadFlag is the agent's flag naming the descriptor of the tasks file
// (v1 pids hierarchy) of the workload cgroup: a child of the sandbox's
// cgroup that holds the sandbox's processes and has their pids limit,
// while the sandbox's own cgroup, the agent's, allows a few more.
const WorkloadFlag = "workload-tasks-fd"

// The workload thread. The agent shares its sandbox's pids limit; the Go
// runtime makes a thread whenever it needs one and aborts the agent when
// the kernel refuses (threads.go). With a workload cgroup, one thread of
// the agent moves itself there (a v1 cgroup holds threads, not only
// processes) and forks every sandbox process: they are born in the
// workload cgroup and count against its limit, never against the room
// the agent keeps above it, so the agent needs no spare threads (eight
// threads fewer per sandbox, in memory and in every walk of the host's
// tasks, such as the one pivot_root does at each create).

// workload forks sandbox processes from a thread in the workload cgroup.
type workload struct {
	reqs chan<- func()
}

// startWorkload starts the workload thread and moves it into the cgroup
// whose tasks file is open as f (which it closes).
func startWorkload(f *os.File) (*workload, error) {
	// The thread is no longer in the agent's cgroup once moved, so it
	// runs nothing else and ends with the agent.
	reqs, err := osthread.Serve(func() error {
		_, err := f.WriteString(strconv.Itoa(unix.Gettid()))
		f.Close()
		if err != nil {
			return fmt.Errorf("move the workload thread into its cgroup: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &workload{reqs: reqs}, nil
}

// close ends the workload thread (tests; an agent keeps it for its life).
func (w *workload) close() { close(w.reqs) }

// forkExec is syscall.ForkExec on the workload thread.
func (w *workload) forkExec(argv0 string, argv []string, attr *syscall.ProcAttr) (pid int, err error) {
	done := make(chan struct{})
	w.reqs <- func() {
		pid, err = syscall.ForkExec(argv0, argv, attr)
		close(done)
	}
	<-done
	return pid, err
}

// hasWorkload says whether sandbox processes are forked from the workload
// thread (and the agent needs no spare threads).
func (s *Server) hasWorkload() bool { return s.reaper != nil && s.reaper.workload != nil }

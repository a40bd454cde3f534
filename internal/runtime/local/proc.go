package local

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// pidStart returns a process's state and start time (clock ticks since boot)
// from /proc/<pid>/stat.
func pidStart(pid int) (state byte, start uint64, err error) {
	state, _, start, err = procStat(pid)
	return state, start, err
}

// procStat returns a process's state, parent pid and start time from
// /proc/<pid>/stat.
//
// It is read with three raw syscalls into a stack buffer: it is called
// several times per sandbox life, and os.ReadFile costs six (an epoll
// registration that /proc refuses, a stat, a second read) and a heap
// buffer.
func procStat(pid int) (state byte, ppid int, start uint64, err error) {
	var buf [1024]byte
	n, err := readSmall("/proc/"+strconv.Itoa(pid)+"/stat", buf[:])
	if err != nil {
		return 0, 0, 0, err
	}
	b := buf[:n]
	// The command name may hold spaces and parens: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	// Fields after it: 0 is field 3 (state), 1 field 4 (ppid); starttime
	// is field 22. Picked out without allocating: this runs for every
	// liveness check.
	var fields [20][]byte
	n = 0
	for rest := b[i+1:]; n < len(fields); n++ {
		rest = bytes.TrimLeft(rest, " \n")
		j := bytes.IndexAny(rest, " \n")
		if j < 0 {
			j = len(rest)
		}
		if j == 0 {
			break
		}
		fields[n], rest = rest[:j], rest[j:]
	}
	if n < len(fields) {
		return 0, 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	ppid64, err := parseDecimal(fields[1])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bad /proc/%d/stat: ppid %q", pid, string(fields[1]))
	}
	start, err = parseDecimal(fields[19])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bad /proc/%d/stat: starttime %q", pid, string(fields[19]))
	}
	return fields[0][0], int(ppid64), start, nil
}

// parseDecimal parses a non-negative decimal number (strconv's parsers
// need a string, which would be an allocation).
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, strconv.ErrSyntax
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		v = v*10 + uint64(c-'0')
	}
	return v, nil
}

// readSmall reads the file at path into buf, which must be larger than the
// file (a /proc file of one read). A file that fills buf is an error.
func readSmall(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, buf)
	for err == unix.EINTR {
		n, err = unix.Read(fd, buf)
	}
	switch {
	case err != nil:
		return 0, &os.PathError{Op: "read", Path: path, Err: err}
	case n >= len(buf):
		return 0, fmt.Errorf("%s: longer than %d bytes", path, len(buf))
	}
	return n, nil
}

// ourDescendant reports whether pid, started at start, is a descendant of
// this process: as a child subreaper we inherit it once its parent exits.
func ourDescendant(pid int, start uint64) bool {
	_, ppid, s, err := procStat(pid)
	if err != nil || s != start {
		return false
	}
	me := os.Getpid()
	for range 8 {
		switch ppid {
		case me:
			return true
		case 0, 1:
			return false
		}
		if _, ppid, _, err = procStat(ppid); err != nil {
			return false
		}
	}
	return false
}

// alive reports whether the process pid, started at start, still runs (a
// zombie does not count).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, s, err := pidStart(pid)
	return err == nil && s == start && state != 'Z' && state != 'X'
}

// sameProcess reports whether pid is still (alive or a zombie) the process
// that started at start.
func sameProcess(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	_, s, err := pidStart(pid)
	return err == nil && s == start
}

// reaper reaps the container PID 1s that became our children (we are a
// child subreaper, and the OCI runtime exits after starting them). It waits
// for known pids only: wait4(-1) would steal os/exec's children.
type reaper struct {
	mu sync.Mutex
	// pids are the watched pids. The value is 0 for a pid that was our
	// child when last tried, else its start time: a descendant that is not
	// our child yet (runsc's sandbox process, until the runsc command that
	// forked it exits) stays watched while that same process exists.
	pids   map[int]uint64
	status map[int]unix.WaitStatus
}

var (
	reaperOnce sync.Once
	theReaper  *reaper
	reaperErr  error
)

// startReaper makes this process a child subreaper and starts the reaper.
func startReaper() (*reaper, error) {
	reaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			reaperErr = fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
			return
		}
		theReaper = &reaper{pids: map[int]uint64{}, status: map[int]unix.WaitStatus{}}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, unix.SIGCHLD)
		go theReaper.loop(sigs)
	})
	return theReaper, reaperErr
}

func (r *reaper) loop(sigs chan os.Signal) {
	// The ticker catches a pid that was registered after its SIGCHLD.
	t := time.NewTicker(time.Second)
	for {
		select {
		case <-sigs:
		case <-t.C:
		}
		r.reap()
	}
}

// ociCommands is held shared by every OCI runtime command this process runs,
// from its start until os/exec has waited for it, so that the orphan sweep
// never reaps (and steals the exit status of) one of them.
var ociCommands sync.RWMutex

// orphanNames are the command names of the orphans an OCI runtime leaves us:
// crun's intermediate processes, and container PID 1s we do not know (a
// killed server's).
var orphanNames = []string{"crun", "runc", "runsc", "sbx-agent"}

// runscOrphan is the command name of gVisor's processes (runsc re-executes
// /proc/self/exe): the Sentry's ptrace stubs become our zombie children
// when the Sentry dies. Matched exactly: sbx runs nothing else by that name.
const runscOrphan = "exe"

// reap collects every watched pid that ended and the orphans of OCI
// runtimes. It runs on every SIGCHLD, several times per sandbox life, so
// it first asks the kernel (one waitid that reaps nothing) for a zombie
// child: while that is a watched pid it is reaped alone, and with no
// zombie child at all there is nothing to collect. Only another zombie
// (an orphan, or a command os/exec is about to wait for) costs the sweep
// of /proc and a wait4 per watched pid.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		pid, ok := zombieChild()
		if !ok {
			r.reapPending()
			return
		}
		if _, watched := r.pids[pid]; !watched {
			break
		}
		r.reapOne(pid)
		if r.watched(pid) {
			break // not reapable after all: the full pass decides
		}
	}
	if ociCommands.TryLock() {
		r.sweepOrphans()
		ociCommands.Unlock()
	}
	for pid := range r.pids {
		// A pid that is not (or no longer) our child is dropped: someone
		// else reaps it.
		r.reapOne(pid)
	}
}

// reapPending looks at the watched pids that were not our children when
// last tried (runsc's sandbox process until its parent exits): with no
// zombie child they can only have become ours, or gone elsewhere. r.mu is
// held.
func (r *reaper) reapPending() {
	for pid, start := range r.pids {
		if start != 0 {
			r.reapOne(pid)
		}
	}
}

// waitidInfo is the kernel's siginfo_t as waitid fills it for a child
// (64-bit layout): x/sys/unix's Siginfo hides the pid.
type waitidInfo struct {
	signo, errno, code, _ int32
	pid                   int32
	_                     [108]byte
}

// zombieChild returns the pid of one of our children that has ended and
// can be waited for, without reaping it (WNOWAIT); ok is false when there
// is none. A dead thread group leader whose other threads still run is
// not one yet.
func zombieChild() (pid int, ok bool) {
	var info waitidInfo
	for {
		_, _, errno := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || info.pid == 0 {
			return 0, false
		}
		return int(info.pid), true
	}
}

// watch registers a container PID 1 to reap.
func (r *reaper) watch(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pids[pid] = 0
	// Only this pid, in case its SIGCHLD came before it was registered: a
	// full reap sweeps every thread's children in /proc, which costs
	// milliseconds on Create's path; the loop does that on the next signal.
	r.reapOne(pid)
}

// reapOne collects pid's exit status if it has ended. r.mu is held.
func (r *reaper) reapOne(pid int) {
	if start := r.pids[pid]; start != 0 && !ourDescendant(pid, start) {
		// Not our child when last tried, and no longer on its way to
		// becoming ours: someone else reaps it (or its pid was reused).
		delete(r.pids, pid)
		return
	}
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	switch {
	case got == pid:
		delete(r.pids, pid)
		r.status[pid] = ws
	case err == nil:
		// Our child, still running (or a zombie whose other threads are
		// still exiting): its pid stays its own until we reap it.
		r.pids[pid] = 0
	case err == unix.ECHILD:
		// Not our child yet: runsc's sandbox process until the runsc
		// command that forked it exits and it is reparented to us. A
		// re-attached container's PID 1, whose parent is init, is dropped.
		if _, _, s, err := procStat(pid); err == nil && ourDescendant(pid, s) {
			r.pids[pid] = s
		} else {
			delete(r.pids, pid)
		}
	}
}

// exitStatus returns how pid ended, if we reaped it. A watched pid that has
// died but whose SIGCHLD the loop has not handled yet is reaped here, so a
// caller that saw the zombie never mistakes it for someone else's child.
func (r *reaper) exitStatus(pid int) (sandbox.ExitStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watched(pid) {
		r.reapOne(pid)
	}
	ws, ok := r.status[pid]
	if !ok {
		return sandbox.ExitStatus{}, false
	}
	return waitStatus(ws), true
}

// watched reports whether pid is watched. r.mu is held.
func (r *reaper) watched(pid int) bool {
	_, ok := r.pids[pid]
	return ok
}

// watching reports whether pid is watched and not reaped yet.
func (r *reaper) watching(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watched(pid)
}

func (r *reaper) forget(pid int) {
	r.mu.Lock()
	delete(r.status, pid)
	r.mu.Unlock()
}

func waitStatus(ws unix.WaitStatus) sandbox.ExitStatus {
	if ws.Signaled() {
		return sandbox.ExitStatus{Code: 128 + int(ws.Signal()), Signal: signalName(ws.Signal()), At: time.Now()}
	}
	return sandbox.ExitStatus{Code: ws.ExitStatus(), At: time.Now()}
}

func signalName(s unix.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return "SIG" + strconv.Itoa(int(s))
}

// sleepBackoff sleeps 1, 2, 4 … up to 50 ms.
func sleepBackoff(attempt int) {
	d := time.Millisecond << min(attempt, 6)
	time.Sleep(min(d, 50*time.Millisecond))
}

// sweepOrphans reaps zombie children whose command name is an OCI
// runtime's or the agent's: as a subreaper we inherit the intermediate
// processes crun forks, which nobody else waits for. Other zombies are left
// to whoever started them.
func (r *reaper) sweepOrphans() {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range bytes.Fields(b) {
			pid, err := strconv.Atoi(string(f))
			if err != nil {
				continue
			}
			if r.watched(pid) {
				// Every sandbox's PID 1 is our child: reap's wait4 of each
				// watched pid collects them, without reading /proc for
				// each of a thousand idle sandboxes on every SIGCHLD.
				continue
			}
			if state, _, err := pidStart(pid); err != nil || state != 'Z' {
				continue
			}
			comm, _ := os.ReadFile("/proc/" + string(f) + "/comm")
			name := string(bytes.TrimSpace(comm))
			match := name == runscOrphan
			for _, n := range orphanNames {
				match = match || strings.HasPrefix(name, n)
			}
			if !match {
				continue
			}
			var ws unix.WaitStatus
			if got, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid && r.watched(pid) {
				delete(r.pids, pid)
				r.status[pid] = ws
			}
		}
	}
}

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sbx-run/sbx/internal/testenv"
)

// The host floor: what this machine does with no container and no sbx at
// all, so that a target below it reads as the machine's limit, not sbx's.
// It runs the same work as two sbx scenarios do inside a sandbox:
//
//   - exec_true: fork, exec and wait for busybox's `true` from this process
//     (syscall.ForkExec + wait4, the least a process start costs here);
//   - file_<size>: write size bytes of the same pattern into a new file of
//     dir (the filesystem that holds the server's sandboxes), then read it
//     back, after one warm-up round trip, as Files does.

// HostBusybox is the static busybox the exec floor runs: the one the
// offline test image, and so the sandboxes' `true`, is made from.
const HostBusybox = testenv.BusyboxPath

// HostExec forks and execs `busybox true` n times (after 5 warm-ups) and
// reports each fork → exit in ms.
func HostExec(ctx context.Context, n int) *Scenario {
	s := &Scenario{Name: "exec_true", System: "host", Errors: map[string]int{},
		Note: "fork + exec + wait4 of " + HostBusybox + " true from the harness, no container"}
	if _, err := os.Stat(HostBusybox); err != nil {
		s.Errors["NO_BUSYBOX"]++
		s.Note = "skipped: " + err.Error()
		return s
	}
	attr := &syscall.ProcAttr{Files: []uintptr{0, 1, 2}}
	argv := []string{"busybox", "true"}
	for i := -5; i < n && ctx.Err() == nil; i++ {
		start := time.Now()
		pid, err := syscall.ForkExec(HostBusybox, argv, attr)
		if err != nil {
			s.Errors["FORK_EXEC"]++
			continue
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			s.Errors["EXIT"]++
			continue
		}
		if i >= 0 {
			s.Samples = append(s.Samples, Ms(time.Since(start)))
		}
	}
	return Finish(s)
}

// HostFiles writes and reads back a file of each size reps times in dir
// and reports throughput with the keys Files uses.
func HostFiles(ctx context.Context, dir string, sizes []int64, reps []int) []*Scenario {
	var out []*Scenario
	path := filepath.Join(dir, "host-floor.bin")
	defer func() {
		// Emptied first, as sbx serve does with a large removed file of
		// its disk pool (internal/runtime/local/reclaim.go), which this
		// file is on: on btrfs a removed file whose writeback had begun
		// would otherwise be written back whole, in the middle of the
		// scenarios after this one.
		_ = os.Truncate(path, 0)
		_ = os.Remove(path)
	}()
	buf := make([]byte, 1<<20)
	roundTrip := func(size int64) (w, rd time.Duration, err error) {
		start := time.Now()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return 0, 0, err
		}
		// Plain writes of 1 MiB, as a program in a sandbox would make.
		_, err = io.CopyBuffer(struct{ io.Writer }{f}, newPattern(size), buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, 0, err
		}
		w = time.Since(start)
		start = time.Now()
		f, err = os.Open(path)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		if err == nil && n != size {
			err = fmt.Errorf("read %d bytes, wrote %d", n, size)
		}
		return w, time.Since(start), err
	}
	for i, size := range sizes {
		s := &Scenario{Name: "file_" + sizeName(size), System: "host", Errors: map[string]int{},
			Values: map[string]float64{}, Series: map[string][]float64{},
			Note: "write then read " + sizeName(size) + " in the server's filesystem from the harness, no container, after one warm-up round trip"}
		fileRounds(ctx, s, size, reps[i], func() (time.Duration, time.Duration, error) { return roundTrip(size) })
		out = append(out, s)
	}
	return out
}

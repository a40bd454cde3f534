package sbx

import (
	"context"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Stats is one reading of what a sandbox uses and its limits, which the
// server reads from the sandbox's cgroups and disk quota on its host. Under
// gVisor (runtime runsc) CPU, memory and process counts include gVisor's
// own Sentry and gofer, which run the sandbox's processes.
type Stats struct {
	// CPU is the CPU time (user + system) its processes used since it
	// started.
	CPU time.Duration
	// MemoryBytes is the memory charged to it now, page cache included:
	// files in /tmp or /dev/shm count until deleted.
	MemoryBytes int64
	// MemoryPeakBytes is the highest MemoryBytes since it started; 0 if
	// the server's kernel does not say (Linux before 5.19 with cgroup v2).
	MemoryPeakBytes int64
	// MemoryLimitBytes is its memory limit; above it the OOM killer ends
	// one of its processes.
	MemoryLimitBytes int64
	// OOMKills counts the processes the OOM killer ended in it since it
	// started. A process that exited with SIGKILL while this grew ran out
	// of memory: raise Resources.MemoryBytes.
	OOMKills int64
	// Pids is its processes and threads now; PidsLimit their limit.
	Pids      int64
	PidsLimit int64
	// DiskBytes is what its writable root filesystem holds, as its disk
	// limit counts it. The server's filesystem updates it when it commits
	// (every ~30 s, or after a sync in the sandbox), so it can lag writes.
	// 0 when the server runs without disk limits.
	DiskBytes int64
	// DiskLimitBytes is its disk limit; 0 when it has none.
	DiskLimitBytes int64
	// ReadAt is when the server read these values.
	ReadAt time.Time
}

// Stats reads what the sandbox uses now (CPU, memory, OOM kills, processes,
// disk) and its limits, to size its Resources or to explain an OOM kill. It
// is cheap for the server (no call into the sandbox), so polling it every
// second is fine. A sandbox that is still starting is waited for; one that
// has ended returns an ErrFailedPrecondition error with reason
// SANDBOX_NOT_RUNNING.
func (s *Sandbox) Stats(ctx context.Context) (*Stats, error) {
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	resp, err := s.c.sandboxes.GetStats(ctx, connect.NewRequest(&sbxv1.GetStatsRequest{SandboxId: s.ID()}))
	if err != nil {
		return nil, s.c.fromWire(err)
	}
	w := resp.Msg.GetStats()
	return &Stats{
		CPU:              time.Duration(w.GetCpuSeconds() * float64(time.Second)),
		MemoryBytes:      w.GetMemoryBytes(),
		MemoryPeakBytes:  w.GetMemoryPeakBytes(),
		MemoryLimitBytes: w.GetMemoryLimitBytes(),
		OOMKills:         w.GetOomKills(),
		Pids:             w.GetPids(),
		PidsLimit:        w.GetPidsLimit(),
		DiskBytes:        w.GetDiskBytes(),
		DiskLimitBytes:   w.GetDiskLimitBytes(),
		ReadAt:           timeFromWire(w.GetReadAt()),
	}, nil
}

package fakeapi

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// FakeStats is what GetStats answers for every running sandbox.
var FakeStats = &sbxv1.SandboxStats{
	CpuSeconds: 1.5, MemoryBytes: 40 << 20, MemoryPeakBytes: 60 << 20, MemoryLimitBytes: 256 << 20,
	OomKills: 1, Pids: 5, PidsLimit: 64, DiskBytes: 20 << 20, DiskLimitBytes: 1 << 30,
	ReadAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
}

// GetStats answers FakeStats for a running sandbox.
func (f *Server) GetStats(_ context.Context, req *connect.Request[sbxv1.GetStatsRequest]) (*connect.Response[sbxv1.GetStatsResponse], error) {
	// As the real server: a sandbox that is starting is waited for.
	f.mu.Lock()
	sb, err := f.get(req.Msg.GetSandboxId())
	if err == nil {
		f.advance(sb, false)
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if _, err := f.running(req.Msg.GetSandboxId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetStatsResponse{Stats: FakeStats}), nil
}

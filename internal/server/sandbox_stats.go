package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// GetStats implements SandboxService.GetStats.
func (s *sandboxService) GetStats(ctx context.Context, req *connect.Request[sbxv1.GetStatsRequest]) (*connect.Response[sbxv1.GetStatsResponse], error) {
	st, err := s.m.Stats(ctx, tenant(ctx), req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetStatsResponse{Stats: statsToWire(st)}), nil
}

func statsToWire(st sandbox.Stats) *sbxv1.SandboxStats {
	return &sbxv1.SandboxStats{
		CpuSeconds:       st.CPU.Seconds(),
		MemoryBytes:      st.MemoryBytes,
		MemoryPeakBytes:  st.MemoryPeakBytes,
		MemoryLimitBytes: st.MemoryLimitBytes,
		OomKills:         st.OOMKills,
		Pids:             st.Pids,
		PidsLimit:        st.PidsLimit,
		DiskBytes:        st.DiskBytes,
		DiskLimitBytes:   st.DiskLimitBytes,
		ReadAt:           ts(st.ReadAt),
	}
}

package server

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/lifecycle"
)

// poolService implements sbxv1connect.PoolServiceHandler.
type poolService struct{ *deps }

var _ sbxv1connect.PoolServiceHandler = (*poolService)(nil)

// List implements PoolService.List. Any authenticated tenant may list:
// pools are server-wide and hold no tenant's data.
func (s *poolService) List(ctx context.Context, _ *connect.Request[sbxv1.ListPoolsRequest]) (*connect.Response[sbxv1.ListPoolsResponse], error) {
	resp := &sbxv1.ListPoolsResponse{}
	for _, p := range s.m.Pools() {
		resp.Pools = append(resp.Pools, poolToWire(p))
	}
	return connect.NewResponse(resp), nil
}

func poolToWire(p lifecycle.PoolStatus) *sbxv1.Pool {
	dur := func(d time.Duration) *durationpb.Duration {
		if d == 0 {
			return nil
		}
		return durationpb.New(d)
	}
	return &sbxv1.Pool{
		Key: p.Key, Image: p.Config.Image, Resources: resourcesToWire(p.Config.Resources),
		MinIdle: int32(p.Config.MinIdle), Max: int32(p.Config.Max), Target: int32(p.Target),
		Idle: int32(p.Idle), Warming: int32(p.Warming),
		Hits: int64(p.Hits), Misses: int64(p.Misses),
		Refills: int64(p.Refills), RefillFailures: int64(p.RefillFailures),
		LastRefill: dur(p.LastRefill), MeanRefill: dur(p.MeanRefill), LastRefillTime: ts(p.LastRefillAt),
		LastError: p.LastError, LastErrorTime: ts(p.LastErrorAt),
		Backoff: dur(p.Backoff), RetryTime: ts(p.RetryAt),
	}
}

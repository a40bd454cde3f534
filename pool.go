package sbx

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// PoolInfo describes one of the server's warm pools: sandboxes kept created
// and idle for an image and resources, so that a matching Run only applies
// its own env, files, working dir, user and command. Pools are configured
// on the server; their figures are server-wide.
type PoolInfo struct {
	// Key identifies the pool: the normalized image, plus its resources
	// when they are not the defaults.
	Key string
	// Image and Resources as configured (zero resources are the defaults).
	Image     string
	Resources Resources
	// MinIdle and Max as configured (Max bounds idle plus warming).
	MinIdle, Max int
	// Target is how many sandboxes the pool refills to: MinIdle plus one
	// per miss in the last minute, at most Max.
	Target int
	// Idle sandboxes are ready; Warming ones are being created.
	Idle, Warming int
	// Hits are creates served from the pool; Misses creates that matched it
	// but found it empty, and started cold.
	Hits, Misses int64
	// Refills are sandboxes the pool created; RefillFailures failed tries.
	Refills, RefillFailures int64
	// LastRefill and MeanRefill are create times of successful refills.
	LastRefill, MeanRefill time.Duration
	LastRefillTime         time.Time
	// LastError is why the last refill failed (empty once one succeeds).
	LastError     string
	LastErrorTime time.Time
	// Backoff is the current back-off after failures; RetryTime is when
	// the next refill is tried.
	Backoff   time.Duration
	RetryTime time.Time
}

// ListPools returns the server's warm pools, in configuration order.
func (c *Client) ListPools(ctx context.Context) ([]PoolInfo, error) {
	resp, err := c.pools.List(ctx, connect.NewRequest(&sbxv1.ListPoolsRequest{}))
	if err != nil {
		return nil, c.fromWire(err)
	}
	out := make([]PoolInfo, 0, len(resp.Msg.GetPools()))
	for _, w := range resp.Msg.GetPools() {
		out = append(out, poolFromWire(w))
	}
	return out, nil
}

func poolFromWire(w *sbxv1.Pool) PoolInfo {
	t := func(ts *timestamppb.Timestamp) time.Time {
		if ts == nil {
			return time.Time{}
		}
		return ts.AsTime()
	}
	r := w.GetResources()
	return PoolInfo{
		Key: w.GetKey(), Image: w.GetImage(),
		Resources: resourcesFromWire(r),
		MinIdle:   int(w.GetMinIdle()), Max: int(w.GetMax()), Target: int(w.GetTarget()),
		Idle: int(w.GetIdle()), Warming: int(w.GetWarming()),
		Hits: w.GetHits(), Misses: w.GetMisses(),
		Refills: w.GetRefills(), RefillFailures: w.GetRefillFailures(),
		LastRefill:     w.GetLastRefill().AsDuration(),
		MeanRefill:     w.GetMeanRefill().AsDuration(),
		LastRefillTime: t(w.GetLastRefillTime()),
		LastError:      w.GetLastError(),
		LastErrorTime:  t(w.GetLastErrorTime()),
		Backoff:        w.GetBackoff().AsDuration(),
		RetryTime:      t(w.GetRetryTime()),
	}
}

package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// DefaultMaxCallsPerTenant is the default of CallLimit: calls one tenant
// may have in flight at once.
const DefaultMaxCallsPerTenant = 4096

// callRetryAfter is the retry delay a refused call carries.
const callRetryAfter = time.Second

// CallLimit bounds the calls each tenant has in flight at once: unary and
// streaming RPCs, and bulk file transfers. Every call holds a connection
// (and an exec stream one to the agent as well), so without it one tenant
// that opens thousands of streams would take the server's file
// descriptors and memory from every other tenant. A nil *CallLimit limits
// nothing.
type CallLimit struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// NewCallLimit returns a CallLimit of max calls per tenant
// (DefaultMaxCallsPerTenant when max <= 0).
func NewCallLimit(max int) *CallLimit {
	if max <= 0 {
		max = DefaultMaxCallsPerTenant
	}
	return &CallLimit{max: max, n: map[string]int{}}
}

// acquire counts one more call of tenantID, or refuses it with
// RESOURCE_EXHAUSTED TOO_MANY_CALLS once the tenant has max in flight.
// release must be called exactly once when the call ends.
func (l *CallLimit) acquire(tenantID string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[tenantID] >= l.max {
		return nil, &sandbox.Error{Kind: sandbox.ErrResourceExhausted, Reason: sandbox.ReasonTooManyCalls, RetryAfter: callRetryAfter,
			Message: fmt.Sprintf("this tenant already has %d calls in flight (exec streams, log follows, waits, transfers), the server's limit (maxCallsPerTenant); end some and retry", l.max)}
	}
	l.n[tenantID]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.n[tenantID]--; l.n[tenantID] <= 0 {
				delete(l.n, tenantID)
			}
			l.mu.Unlock()
		})
	}, nil
}

// inFlight is the number of calls tenantID has in flight (for tests).
func (l *CallLimit) inFlight(tenantID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[tenantID]
}

// callLimitInterceptor applies l to every RPC; it runs after auth, so the
// tenant is known.
func callLimitInterceptor(l *CallLimit) connect.Interceptor { return &callLimiter{l: l} }

type callLimiter struct{ l *CallLimit }

func (i *callLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		release, err := i.l.acquire(tenant(ctx))
		if err != nil {
			return nil, err
		}
		defer release()
		return next(ctx, req)
	}
}

func (i *callLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *callLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		release, err := i.l.acquire(tenant(ctx))
		if err != nil {
			return err
		}
		defer release()
		return next(ctx, conn)
	}
}

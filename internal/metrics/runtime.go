package metrics

import (
	"context"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// InstrumentRuntime returns rt with its creates (count and latency, by
// result), starts and stops measured. The lifecycle manager is given the
// wrapper, so every create is seen whatever API call caused it.
func (r *Registry) InstrumentRuntime(rt sandbox.Runtime) sandbox.Runtime {
	return &runtime{Runtime: rt, m: r}
}

type runtime struct {
	sandbox.Runtime
	m *Registry
}

func (rt *runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Info, error) {
	start := time.Now()
	info, err := rt.Runtime.Create(ctx, spec)
	result := "ok"
	if err != nil {
		result = reasonOf(err)
		rt.m.errors.WithLabelValues("runtime", result).Inc()
	}
	rt.m.creates.WithLabelValues(result).Inc()
	rt.m.createDur.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return info, err
}

func (rt *runtime) Start(ctx context.Context, id string, start sandbox.StartSpec) error {
	t := time.Now()
	err := rt.Runtime.Start(ctx, id, start)
	if err != nil {
		rt.m.errors.WithLabelValues("runtime", reasonOf(err)).Inc()
	} else {
		rt.m.startDur.Observe(time.Since(t).Seconds())
	}
	return err
}

func (rt *runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	rt.m.stops.Inc()
	return rt.Runtime.Stop(ctx, id, grace)
}

// Unwrap returns the wrapped runtime, whose optional interfaces
// (sandbox.OptionalOf) the wrapper does not hide.
func (rt *runtime) Unwrap() sandbox.Runtime { return rt.Runtime }

package metrics

import (
	"context"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Stats forwards to the runtime's sandbox.StatsReader, so that the
// wrapper does not hide it (as Admit does). Readings are not measured:
// they are a few file reads, and users may poll them every second.
func (rt *runtime) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	if s, ok := rt.Runtime.(sandbox.StatsReader); ok {
		return s.Stats(ctx, id)
	}
	return sandbox.Stats{}, sandbox.FailedPrecondition(sandbox.ReasonStatsUnsupported,
		"this server's runtime does not report sandboxes' resource usage")
}

package metrics

import (
	"testing"

	"github.com/sbx-run/sbx/internal/runtime/local"
)

type fakeNetns local.NetnsReuse

func (f fakeNetns) NetnsReuse() local.NetnsReuse { return local.NetnsReuse(f) }

// TestNetnsMetrics: the runtime's namespace counters, by label.
func TestNetnsMetrics(t *testing.T) {
	r := New()
	r.WatchNetns(fakeNetns{Reused: 7, Made: 3, Kept: 8, Dropped: 2})
	wantMetrics(t, scrape(t, r),
		`sbx_netns_acquired_total{how="reused"} 7`, `sbx_netns_acquired_total{how="made"} 3`,
		`sbx_netns_released_total{fate="kept"} 8`, `sbx_netns_released_total{fate="dropped"} 2`)
}

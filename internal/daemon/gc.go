package daemon

import (
	"os"
	"runtime/debug"
)

// serveGCPercent is the server's GOGC when the environment sets none.
//
// The server allocates for every request and sandbox and keeps little, so
// at Go's default of 100 its collector runs often under load (allocation
// and GC were 4 % of all CPU at 92 creates/s): with 400, host CPU per
// sandbox life in the sustained-creates scenario fell by 2.3 % and the
// rate rose by 3.4 % (six interleaved pairs, docs/BENCHMARKS.md). Its RSS
// grows by about 0.1 MiB per idle sandbox instead of 0.05.
const serveGCPercent = 400

// tuneGC sets serveGCPercent unless GOGC is in the environment.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}

package daemon

import (
	"net/http"
	"net/http/pprof"
)

// privateMux is what --metrics-listen serves, with no key, on an address
// the operator keeps private: /metrics, and with --pprof Go's profiler
// (/debug/pprof/: CPU, heap, goroutine and block profiles and traces of
// the server process), for finding where a server's time goes in
// production.
func privateMux(metrics http.Handler, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

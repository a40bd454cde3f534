package daemon

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPrivateMux(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("m 1\n")) })
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(privateMux(metrics, on))
		get := func(path string) (int, string) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			buf := make([]byte, 4096)
			n, _ := resp.Body.Read(buf)
			b.Write(buf[:n])
			return resp.StatusCode, b.String()
		}
		if code, body := get("/metrics"); code != 200 || body != "m 1\n" {
			t.Errorf("pprof=%v: /metrics %d %q", on, code, body)
		}
		code, body := get("/debug/pprof/")
		if on && (code != 200 || !strings.Contains(body, "goroutine")) {
			t.Errorf("pprof on: /debug/pprof/ %d", code)
		}
		if !on && code != 404 {
			t.Errorf("pprof off: /debug/pprof/ %d, want 404", code)
		}
		srv.Close()
	}
}

func TestPprofNeedsMetricsListen(t *testing.T) {
	c := Default()
	c.Pprof = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Errorf("pprof without metrics-listen: %v", err)
	}
}

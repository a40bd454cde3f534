package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestOperations checks /healthz, /metrics and the JSON log: every line is
// a JSON object, and every line that names a sandbox carries its id under
// "sandbox".
func TestOperations(t *testing.T) {
	s := startServer(t)
	c := s.client()
	ctx := ctxT(t, 2*time.Minute)

	if body := get(t, s.url()+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %q", body)
	}
	sb, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so that usage shows.
	p, err := sb.Exec(ctx, []string{"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	c.FromID("sb-nosuchsandbox00000").Refresh(ctx) // one NOT_FOUND

	// /metrics needs an admin's key on the API's listener.
	if code := status(t, s.url()+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a key: %d, want 401", code)
	}
	m := metrics(t, s)
	for _, want := range []string{
		`sbx_sandboxes{state="RUNNING"} 1`,
		`sbx_sandbox_creates_total{result="ok"} 1`,
		`sbx_sandbox_create_duration_seconds_count{result="ok"} 1`,
		`sbx_execs_total{result="ok"} 1`,
		`sbx_errors_total{reason="SANDBOX_NOT_FOUND",source="api"} 1`,
		`sbx_tenant_active_sandboxes{tenant="local"} 1`,
		`sbx_api_requests_total{code="ok",procedure="SandboxService/Create"} 1`,
		`sbx_images_cached 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, re := range []string{
		`sbx_tenant_cpu_seconds_total\{tenant="local"\} [0-9.e-]+`,
		`sbx_tenant_memory_bytes\{tenant="local"\} [1-9][0-9.e+]*`,
	} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("/metrics lacks a line matching %s", re)
		}
	}

	sbID := regexp.MustCompile(`sb-[a-z2-7]{16}`)
	for _, line := range strings.Split(s.log(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the key banner printed once on first start
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %s", line)
			continue
		}
		if id := sbID.FindString(line); id != "" && rec["sandbox"] == nil {
			t.Errorf("log line about %s lacks a \"sandbox\" field: %s", id, line)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	return getWithKey(t, url, "")
}

// metrics reads s's /metrics with its (local, admin) key, which the API's
// listeners require.
func metrics(t *testing.T, s *server) string {
	t.Helper()
	return getWithKey(t, s.url()+"/metrics", s.key)
}

func getWithKey(t *testing.T, url, key string) string {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", url, r.Status, b)
	}
	return string(b)
}

// status is the HTTP status of a GET of url with key.
func status(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

// TestMetricsListen checks --metrics-listen: /metrics with no key on the
// operator's private address, while the API's listener still wants an
// admin's key.
func TestMetricsListen(t *testing.T) {
	addr := freeAddr(t)
	s := startServer(t, "--metrics-listen", addr)
	if m := get(t, "http://"+addr+"/metrics"); !strings.Contains(m, "sbx_sandboxes") {
		t.Errorf("--metrics-listen: no sbx metrics in %.200q", m)
	}
	if code := status(t, s.url()+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("API /metrics without a key: %d, want 401", code)
	}
}

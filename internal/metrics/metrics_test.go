package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestReasonAndCode(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason string
		code   connect.Code
	}{
		{sandbox.NotFound(sandbox.ReasonSandboxNotFound, "x"), "SANDBOX_NOT_FOUND", connect.CodeNotFound},
		{sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded, "q"), "QUOTA_EXCEEDED", connect.CodeResourceExhausted},
		{connect.NewError(connect.CodeUnavailable, errors.New("x")), "UNAVAILABLE", connect.CodeUnavailable},
		{context.Canceled, "CANCELED", connect.CodeCanceled},
		{errors.New("boom"), "INTERNAL", connect.CodeInternal},
	} {
		if r := reasonOf(c.err); r != c.reason {
			t.Errorf("reasonOf(%v) = %q, want %q", c.err, r, c.reason)
		}
		if k := codeOf(c.err); k != c.code {
			t.Errorf("codeOf(%v) = %v, want %v", c.err, k, c.code)
		}
	}
	if p := shortProcedure("/sbx.v1.SandboxService/Create"); p != "SandboxService/Create" {
		t.Errorf("shortProcedure: %q", p)
	}
}

func TestObserveAndExpose(t *testing.T) {
	r := New()
	r.observe("SandboxService/Exec", nil)
	r.observe("SandboxService/Get", sandbox.NotFound(sandbox.ReasonSandboxNotFound, "x"))
	r.ObservePull("busybox", time.Second, nil)
	r.ObservePull("nosuch", time.Millisecond, sandbox.NotFound(sandbox.ReasonImageNotFound, "x"))
	r.ObservePull("busybox", time.Second, nil)
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sbx_execs_total{result="ok"} 1`,
		`sbx_errors_total{reason="SANDBOX_NOT_FOUND",source="api"} 1`,
		`sbx_api_requests_total{code="not_found",procedure="SandboxService/Get"} 1`,
		`sbx_image_pulls_total{result="ok"} 2`,
		`sbx_image_pulls_total{result="IMAGE_NOT_FOUND"} 1`,
		`sbx_image_pull_duration_seconds_count{result="ok"} 2`,
		`sbx_errors_total{reason="IMAGE_NOT_FOUND",source="image"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestCgroupReaderRejectsPathTricks(t *testing.T) {
	c := &cgroupReader{parent: "sbx", cpuV1: "/nonexistent", memV1: "/nonexistent"}
	for _, id := range []string{"", "../x", "a/b", ".."} {
		if _, _, ok := c.usage(id); ok {
			t.Errorf("usage(%q) read something", id)
		}
	}
}

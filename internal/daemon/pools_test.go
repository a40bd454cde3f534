package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestPoolsFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sbx.yaml")
	os.WriteFile(p, []byte(`
pools:
  - image: busybox:1.36
    minIdle: 4
    max: 8
    cpuMillis: 500
  - image: python:3.11
    minIdle: 1
`), 0o600)
	c := Default()
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got := c.lifecyclePools()
	want := []lifecycle.PoolConfig{
		{Image: "busybox:1.36", MinIdle: 4, Max: 8, Resources: sandbox.Resources{CPUMillis: 500}},
		{Image: "python:3.11", MinIdle: 1},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("lifecycle pools = %+v, want %+v", got, want)
	}
}

func TestPoolFlag(t *testing.T) {
	for in, want := range map[string]PoolConfig{
		"busybox=2":                         {Image: "busybox", MinIdle: 2},
		"busybox:1.36=4:8":                  {Image: "busybox:1.36", MinIdle: 4, Max: 8},
		"127.0.0.1:5000/app@sha256:abc=1:1": {Image: "127.0.0.1:5000/app@sha256:abc", MinIdle: 1, Max: 1},
	} {
		got, err := ParsePoolFlag(in)
		if err != nil || got != want {
			t.Errorf("ParsePoolFlag(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"busybox", "=2", "busybox=x", "busybox=1:y"} {
		if _, err := ParsePoolFlag(in); err == nil {
			t.Errorf("ParsePoolFlag(%q) accepted", in)
		}
	}
}

func TestPoolValidation(t *testing.T) {
	for name, pools := range map[string][]PoolConfig{
		"runtime":   {{Image: "busybox", MinIdle: 1, Runtime: "runsc"}},
		"min > max": {{Image: "busybox", MinIdle: 3, Max: 2}},
		"negative":  {{Image: "busybox", MinIdle: -1}},
		"bad image": {{Image: "Not A Ref", MinIdle: 1}},
		"duplicate": {{Image: "busybox", MinIdle: 1}, {Image: "docker.io/library/busybox:latest", MinIdle: 1}},
	} {
		c := Default()
		c.Pools = pools
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pool") && name != "bad image" {
			t.Errorf("%s: Validate = %v, want a pool error", name, err)
		}
	}
}

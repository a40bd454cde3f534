package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestStats(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d"))
	out := c.must("stats", id)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("stats printed %q, want a header and one row", out)
	}
	for _, want := range []string{id, "1.50s", "40.0 MiB / 256.0 MiB", "60.0 MiB", "5 / 64", "20.0 MiB / 1.0 GiB"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(c.must("stats", "--json", id)), &v); err != nil {
		t.Fatal(err)
	}
	if v["id"] != id || v["cpu_seconds"] != 1.5 || v["memory_bytes"] != float64(40<<20) || v["oom_kills"] != float64(1) || v["read_at"] != "2026-01-02T03:04:05Z" {
		t.Errorf("stats --json: %v", v)
	}
	if code, _, errOut := c.run("", "stats", "sb-nosuch"); code == 0 || !strings.Contains(errOut, "SANDBOX_NOT_FOUND") {
		t.Errorf("stats of an unknown sandbox: exit %d, stderr %q", code, errOut)
	}
	c.must("stop", id)
	if code, _, errOut := c.run("", "stats", id); code == 0 || !strings.Contains(errOut, "SANDBOX_NOT_RUNNING") {
		t.Errorf("stats of a stopped sandbox: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := c.run("", "stats", "--json", "--watch", id); code != 2 {
		t.Errorf("--json --watch: exit %d, want 2 (usage)", code)
	}
}

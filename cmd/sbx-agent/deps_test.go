package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanDeps keeps the agent off the packages that were half of its
// start (every sandbox starts one): the agent speaks internal/agentwire,
// not HTTP, and must not link net/http, TLS, Connect or crypto/rand again
// through some import.
func TestLeanDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := map[string]bool{"net/http": true, "crypto/tls": true, "connectrpc.com/connect": true, "crypto/rand": true}
	for _, pkg := range strings.Fields(string(out)) {
		if banned[pkg] {
			t.Errorf("sbx-agent links %s; see internal/agentwire for why it must not", pkg)
		}
	}
}

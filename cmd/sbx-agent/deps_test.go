package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLeanDeps keeps what the agent does not need out of it: it starts once
// per sandbox, on every cold create's path, and package initialization and
// the page faults of a larger binary are most of a Go program's start on
// the benchmark machine. net/http, TLS, Connect and crypto/rand were about
// half of the agent's start (internal/agentwire replaced them); the
// protobuf runtime and protoc-gen-go's types about 4 ms more
// (internal/protolite replaced them).
func TestLeanDeps(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"google.golang.org/protobuf/", "connectrpc.com/", "net/http", "crypto/tls", "crypto/rand", "github.com/sbx-run/sbx/gen/sbx/agent/v1"} {
			if strings.HasPrefix(pkg, banned) && pkg != "github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb" {
				t.Errorf("sbx-agent links %s", pkg)
			}
		}
	}
}

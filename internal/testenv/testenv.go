// Package testenv is what sbx's integration and end-to-end tests share: a
// check for prerequisites that fails in CI instead of skipping, the agent
// binary built once, test images built from Debian packages, and an OCI
// registry on 127.0.0.1. Nothing here touches the internet.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// InCI reports whether the tests run under .ci/run (CI=true), where every
// prerequisite is installed and a missing one is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// Require checks that each command is on PATH and that the test runs as root
// when root is set. A missing prerequisite fails the test in CI and skips it
// elsewhere, with a message saying what to install.
func Require(t testing.TB, root bool, commands ...string) {
	t.Helper()
	if root && os.Geteuid() != 0 {
		missing(t, "this test needs root (it creates containers, mounts and cgroups)")
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			missing(t, c+" is not installed: run .ci/run once, or apt-get install the package that ships it")
		}
	}
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatal("prerequisite missing: " + msg)
	}
	t.Skip("prerequisite missing: " + msg)
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// Run runs the package's tests and then removes the binaries Binary built:
// call it from TestMain as os.Exit(testenv.Run(m)) in every package that
// uses Binary, or each test process leaves its binaries (tens of MiB) in
// the temp dir.
func Run(m *testing.M) int {
	code := m.Run()
	RemoveBinaries()
	return code
}

// RemoveBinaries removes what Binary built in this process.
func RemoveBinaries() {
	buildMu.Lock()
	defer buildMu.Unlock()
	for pkg, p := range buildCache {
		os.RemoveAll(filepath.Dir(p))
		delete(buildCache, pkg)
	}
}

// Binary builds the main package at pkg (relative to the module root, e.g.
// "./cmd/sbx-agent") once per test process, statically (CGO_ENABLED=0), and
// returns the binary's path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "sbx-bin-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildCache[pkg] = out
	return out
}

// AgentBinary returns the path of a freshly built static sbx-agent.
func AgentBinary(t testing.TB) string { return Binary(t, "./cmd/sbx-agent") }

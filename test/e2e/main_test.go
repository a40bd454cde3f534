// Package e2e holds sbx's end-to-end tests: they build the real `sbx` and
// `sbx-agent` binaries, start `sbx serve` on a fresh data dir and a random
// port with docker.io mirrored to a registry on 127.0.0.1 (holding the
// Debian-built busybox and python images), and drive it through the Go SDK
// and the CLI binary, as a user would.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

func TestMain(m *testing.M) {
	// The session lease test runs this binary as a client that dies.
	if os.Getenv(envSessionClient) != "" {
		os.Exit(sessionClient())
	}
	os.Exit(testenv.Run(m))
}

const envSessionClient = "SBX_E2E_SESSION_CLIENT"

// sessionClient opens a session with a 2 s lease and one sandbox in it,
// prints "SESSION_ID SANDBOX_ID" and then hangs until killed.
func sessionClient() int {
	ctx := context.Background()
	c, err := sbx.NewClient()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := c.NewSession(ctx, sbx.SandboxDefaults{Image: "busybox"}, sbx.Lease(2*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sb, err := s.Run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := sb.Wait(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%s %s\n", s.ID(), sb.ID())
	select {}
}

var (
	registryOnce sync.Once
	registryHost string
	registryErr  error
)

// testRegistry returns the host of a registry on 127.0.0.1 holding
// library/busybox:latest, shared by every test of this process. withPython
// adds library/python:3.11 (pushed once; it is large).
func testRegistry(t testing.TB) string {
	t.Helper()
	registryOnce.Do(func() {
		bb, err := testenv.NewBusyboxImage()
		if err != nil {
			registryErr = err
			return
		}
		host, _, err := testenv.ServeRegistry("127.0.0.1:0")
		if err != nil {
			registryErr = err
			return
		}
		ctx := context.Background()
		if _, err := testenv.Push(ctx, host, "library/busybox:latest", bb); err != nil {
			registryErr = err
			return
		}
		registryHost = host
	})
	if registryErr != nil {
		t.Fatalf("test registry: %v", registryErr)
	}
	return registryHost
}

var (
	pythonOnce sync.Once
	pythonErr  error
)

// withPython pushes the Debian python image as library/python:3.11 to the
// test registry.
func withPython(t testing.TB) {
	t.Helper()
	host := testRegistry(t)
	pythonOnce.Do(func() {
		py, err := testenv.NewPythonImage(io.Discard)
		if err != nil {
			pythonErr = err
			return
		}
		_, pythonErr = testenv.Push(context.Background(), host, "library/python:3.11", py)
	})
	if pythonErr != nil {
		t.Fatalf("python test image: %v", pythonErr)
	}
}

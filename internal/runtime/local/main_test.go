package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(leaderExitEnv) != "" {
		leaderExitHelper()
	}
	// crun needs a private mount namespace on a hybrid host; runc works
	// there too, so every test runs in it.
	code, reexeced, err := EnterMountNamespace("crun")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if reexeced {
		os.Exit(code)
	}
	code = testenv.Run(m)
	fixture.cleanup()
	os.Exit(code)
}

// fixture is shared by every test of the package: one registry on
// 127.0.0.1 holding the busybox image, one image store.
type sharedFixture struct {
	once     sync.Once
	err      error
	busybox  string
	images   *image.Store
	imageDir string
	stop     func()
}

var fixture sharedFixture

func (f *sharedFixture) cleanup() {
	if f.stop != nil {
		f.stop()
	}
	if f.imageDir != "" {
		os.RemoveAll(f.imageDir)
	}
}

// env returns the shared registry's busybox ref and the image store, with
// the image already pulled (so benchmarks measure a cached image).
func env(t testing.TB) (string, *image.Store) {
	t.Helper()
	testenv.Require(t, true, "crun", "runc", "runsc")
	fixture.once.Do(func() {
		host, stop, err := testenv.ServeRegistry("127.0.0.1:0")
		if err != nil {
			fixture.err = err
			return
		}
		fixture.stop = stop
		img, err := testenv.NewBusyboxImage()
		if err != nil {
			fixture.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ref, err := testenv.Push(ctx, host, "library/busybox:latest", img)
		if err != nil {
			fixture.err = err
			return
		}
		fixture.busybox = ref
		fixture.imageDir, err = os.MkdirTemp("", "sbx-img-")
		if err != nil {
			fixture.err = err
			return
		}
		fixture.images, err = image.New(image.Config{Root: fixture.imageDir, Insecure: []string{host}})
		if err != nil {
			fixture.err = err
			return
		}
		_, fixture.err = fixture.images.Get(ctx, ref, nil)
	})
	if fixture.err != nil {
		t.Fatalf("test fixture: %v", fixture.err)
	}
	return fixture.busybox, fixture.images
}

// newRuntime returns a Runtime on a fresh root with its own cgroup parent;
// at cleanup it deletes what is left and checks nothing stays behind.
func newRuntime(t testing.TB, runtimeName string, mod ...func(*Config)) *Runtime {
	t.Helper()
	_, images := env(t)
	root, err := os.MkdirTemp("", "sbx-rt-")
	if err != nil {
		t.Fatal(err)
	}
	// The layout sbx serve uses: sandbox dirs and OCI state in a run root
	// of their own (a tmpfs there, any dir here), state dirs under Root.
	cfg := Config{
		Root:         root,
		RunRoot:      root + "-run",
		Runtime:      runtimeName,
		AgentPath:    testenv.AgentBinary(t),
		Images:       images,
		Defaults:     sandbox.Resources{CPUMillis: 1000, MemoryBytes: 256 << 20, Pids: 256},
		CgroupParent: "sbx-test-" + runtimeName,
	}
	for _, m := range mod {
		m(&cfg)
	}
	rt, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		list, _ := rt.List(context.Background())
		for _, in := range list {
			if err := rt.Delete(context.Background(), in.ID); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
				t.Errorf("cleanup: Delete(%s): %v", in.ID, err)
			}
		}
		if err := rt.Close(context.Background()); err != nil {
			t.Errorf("cleanup: Close: %v", err)
		}
		os.RemoveAll(root)
		os.RemoveAll(cfg.RunRoot)
		// The parent cgroups, when no other test's runtime still uses them.
		for _, d := range rt.cg.dirs {
			_ = os.Remove(filepath.Join(d, cfg.CgroupParent))
		}
	})
	return rt
}

func TestConformance(t *testing.T) {
	for _, name := range []string{"crun", "runc", "runsc"} {
		t.Run(name, func(t *testing.T) {
			ref, _ := env(t)
			runtimetest.Run(t, runtimetest.Harness{Runtime: newRuntime(t, name), Image: ref})
		})
	}
}

package agent_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestRelativePaths: a relative path in a file call, a mounted file or an
// exec's working dir is taken from the sandbox's working dir (the start's,
// else the image's), as W&B's examples write them.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	imgDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t)
	ctx := ctxT(t)
	// Before the Init, relative paths are taken from /.
	if _, err := a.c.Stat(ctx, strings.TrimPrefix(dir, "/")); err != nil {
		t.Errorf("Stat of a relative path before the Init: %v", err)
	}
	err := a.c.Init(ctx, initSpec(sandbox.ImageConfig{WorkingDir: imgDir, Env: []string{"PATH=/usr/bin:/bin"}},
		sandbox.StartSpec{WorkingDir: dir, Files: []sandbox.File{{Path: "mounted/train.py", Content: []byte("print(1)\n")}}}))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "mounted/train.py")); err != nil || string(b) != "print(1)\n" {
		t.Errorf("mounted file with a relative path: %q %v", b, err)
	}
	if err := a.c.WriteFile(ctx, "hello.txt", 0o644, strings.NewReader("hi\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "hello.txt")); err != nil || string(b) != "hi\n" {
		t.Errorf("WriteFile of a relative path: %q %v", b, err)
	}
	rc, err := a.c.ReadFile(ctx, "./sub/../hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hi\n" {
		t.Errorf("ReadFile of a relative path: %q", b)
	}
	if r := run(t, a.c, sandbox.ExecSpec{Command: []string{"pwd"}, WorkingDir: "sub"}); r.stdout != filepath.Join(dir, "sub")+"\n" {
		t.Errorf("exec with a relative working dir: %q %q", r.stdout, r.stderr)
	}
	// Never above the sandbox's root, and never its root itself for Remove.
	if err := a.c.Remove(ctx, strings.Repeat("../", 64), true); !strings.Contains(err.Error(), "refusing to remove the sandbox's root") {
		t.Errorf("Remove of ../../..: %v, want a refusal", err)
	}

	// Without a start working dir, the image's.
	a = startAgent(t)
	if err := a.c.Init(ctx, initSpec(sandbox.ImageConfig{WorkingDir: imgDir}, sandbox.StartSpec{})); err != nil {
		t.Fatal(err)
	}
	if err := a.c.WriteFile(ctx, "img.txt", 0o644, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(imgDir, "img.txt")); err != nil {
		t.Errorf("relative path with the image's working dir: %v", err)
	}
}

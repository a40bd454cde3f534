package e2e

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestFileModeBits: setuid, setgid and sticky bits and the exact
// permission bits reach the sandbox's files on every path that writes
// them: a mounted file at create, a small write (RPC), a large one (bulk
// endpoint) and MakeDir (no umask); Stat reports them back.
func TestFileModeBits(t *testing.T) {
	s := startServer(t)
	c := s.client()
	ctx := ctxT(t, 2*time.Minute)
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.MountedFileMode("/opt/tool", []byte("#!/bin/sh\n"), fs.ModeSetuid|0o750))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Delete(ctx) })
	if err := sb.WriteFile(ctx, "/tmp/small", []byte("x"), fs.ModeSetgid|0o710); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.WriteFileFrom(ctx, "/tmp/big", bytes.NewReader(make([]byte, 2<<20)), fs.ModeSetuid|fs.ModeSetgid|0o755); err != nil {
		t.Fatal(err)
	}
	if err := sb.MakeDir(ctx, "/tmp/shared", fs.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/opt/tool": "4750", "/tmp/small": "2710", "/tmp/big": "6755", "/tmp/shared": "1777"}
	mode := map[string]fs.FileMode{"/opt/tool": fs.ModeSetuid | 0o750, "/tmp/small": fs.ModeSetgid | 0o710,
		"/tmp/big": fs.ModeSetuid | fs.ModeSetgid | 0o755, "/tmp/shared": fs.ModeSticky | 0o777}
	for path, octal := range want {
		p, err := sb.Exec(ctx, []string{"stat", "-c", "%a", path})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(res.Stdout)); got != octal {
			t.Errorf("%s: mode %s in the sandbox, want %s", path, got, octal)
		}
		fi, err := sb.Stat(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); got != mode[path] {
			t.Errorf("%s: Stat says %v, want %v", path, got, mode[path])
		}
	}
}

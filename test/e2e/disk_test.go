package e2e

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestDiskLimits runs a server with disk limits (a btrfs pool image in its
// data dir) and a warm pool of 32 MiB sandboxes: writing past a sandbox's
// limit fails inside and through the API, a neighbour is unaffected, a
// warm sandbox has its pool's limit, limits out of range are refused, and
// a restarted server reuses the pool's mount.
func TestDiskLimits(t *testing.T) {
	testenv.Require(t, true, "mkfs.btrfs")
	cfg := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(cfg, []byte("pools:\n- image: busybox\n  minIdle: 1\n  diskBytes: 33554432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--config", cfg, "--max-disk-bytes", "268435456", "--default-disk-bytes", "134217728", "--disk-pool-bytes", "2147483648")
	c := s.client()
	ctx := ctxT(t, 4*time.Minute)
	waitPool(t, ctx, c, "1 idle", func(p sbx.PoolInfo) bool { return p.Idle == 1 })

	sh := func(sb *sbx.Sandbox, script string) (string, int) {
		t.Helper()
		p, err := sb.Exec(ctx, []string{"sh", "-c", script})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		return string(res.Stdout) + string(res.Stderr), res.ExitCode
	}
	// Cold, with its own limit.
	a, err := c.Run(ctx, sbx.Image("busybox"), sbx.DiskLimit(48<<20))
	if err != nil {
		t.Fatal(err)
	}
	if out, code := sh(a, "dd if=/dev/zero of=/big bs=1M count=96"); code == 0 || !strings.Contains(out, "quota exceeded") {
		t.Errorf("dd of 96 MiB into a 48 MiB sandbox: code %d, %q; want Disk quota exceeded", code, out)
	}
	err = a.WriteFile(ctx, "/more", bytes.Repeat([]byte{'x'}, 64<<20), 0)
	if !errors.Is(err, sbx.ErrResourceExhausted) || !strings.Contains(err.Error(), "disk limit of 48 MiB") || sbx.ReasonOf(err) != "DISK_LIMIT_REACHED" {
		t.Errorf("WriteFile of 64 MiB into a full 48 MiB sandbox: %v (reason %q); want RESOURCE_EXHAUSTED DISK_LIMIT_REACHED naming the limit", err, sbx.ReasonOf(err))
	}
	// A neighbour with the default (128 MiB) is unaffected.
	b, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if out, code := sh(b, "dd if=/dev/zero of=/f bs=1M count=96 && rm /f && echo ok"); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("neighbour writing 96 MiB of its 128: code %d, %q", code, out)
	}
	// Warm: the pool's 32 MiB.
	w, err := c.Run(ctx, sbx.Image("busybox"), sbx.DiskLimit(32<<20))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := w.Refresh(ctx); err != nil || !claimedWarm(info) {
		t.Errorf("a create matching the pool was not served from it: %+v, %v", info, err)
	}
	if out, code := sh(w, "dd if=/dev/zero of=/big bs=1M count=48"); code == 0 || !strings.Contains(out, "quota exceeded") {
		t.Errorf("dd of 48 MiB into a 32 MiB warm sandbox: code %d, %q", code, out)
	}
	// Out of range, and the message says which field and what is allowed.
	for _, n := range []int64{512 << 20, 1 << 20} {
		_, err := c.Run(ctx, sbx.Image("busybox"), sbx.DiskLimit(n))
		if !errors.Is(err, sbx.ErrInvalidArgument) || !strings.Contains(err.Error(), "disk_bytes") {
			t.Errorf("disk limit %d: %v; want INVALID_ARGUMENT naming disk_bytes", n, err)
		}
	}

	// A restart mounts the pool through the same loop device, which its
	// running sandboxes kept (the server detached its own mount at exit),
	// never through a second one. Without the pool's config, so that the
	// restarted server removes the idle warm sandbox.
	dev := poolDevice(t, s)
	s.terminate()
	if m := hostMounts(t, filepath.Join(s.dataDir, "disk")); m != 0 {
		t.Errorf("the pool is still mounted %d times after the server exited", m)
	}
	for i, a := range s.args {
		if a == "--config" {
			s.args = append(s.args[:i:i], s.args[i+2:]...)
			break
		}
	}
	s.start()
	if got := poolDevice(t, s); got != dev {
		t.Errorf("after a restart the pool is on %s, before on %s", got, dev)
	}
	if out, code := sh(b, "echo still > /f && cat /f"); code != 0 || out != "still\n" {
		t.Errorf("a sandbox across the restart: code %d, %q", code, out)
	}
	// Cleanup deletes them all and checks no subvolume is left.
}

// poolDevice returns the one loop device of the server's pool image, and
// fails if the pool is mounted more than once in this (the host's) mount
// namespace or the image is on more than one device.
func poolDevice(t *testing.T, s *server) string {
	t.Helper()
	pool := filepath.Join(s.dataDir, "disk")
	devs := hostMountSources(t, pool)
	if len(devs) != 1 {
		t.Fatalf("the disk pool %s is mounted %d times in the host's mount namespace: %v", pool, len(devs), devs)
	}
	img := filepath.Join(s.dataDir, "disk.img")
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == img {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the pool image %s is attached to %d loop devices", img, n)
	}
	return devs[0]
}

// hostMountSources lists the sources of the mounts at target in this
// process's (the host's) mount namespace.
func hostMountSources(t *testing.T, target string) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 9 && f[4] == target {
			devs = append(devs, f[len(f)-2])
		}
	}
	return devs
}

func hostMounts(t *testing.T, target string) int { return len(hostMountSources(t, target)) }

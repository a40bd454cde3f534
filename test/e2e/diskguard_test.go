package e2e

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestDiskGuard fills the filesystem that holds a server's data dir (a
// tmpfs of the test's) below the server's disk reserve: creates are
// refused with DISK_POOL_FULL and a retry delay, a running sandbox's disk
// is frozen at its size (writes fail with EDQUOT inside, and with
// DISK_POOL_FULL through the API) instead of the pool going read-only, and
// once space is freed everything works again, the sandbox's files intact.
func TestDiskGuard(t *testing.T) {
	testenv.Require(t, true, "mkfs.btrfs")
	s := startServerWith(t, serverOptions{dataTmpfs: "1400m"},
		"--disk-pool-bytes", "1073741824", "--disk-reserve-bytes", "67108864", "--default-disk-bytes", "134217728")
	c := s.client()
	ctx := ctxT(t, 3*time.Minute)
	a, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	sh := func(script string) (string, int) {
		t.Helper()
		p, err := a.Exec(ctx, []string{"sh", "-c", script})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		return string(res.Stdout) + string(res.Stderr), res.ExitCode
	}
	if out, code := sh("dd if=/dev/zero of=/kept bs=1M count=4 && sync && echo ok"); code != 0 {
		t.Fatalf("write before the squeeze: %d %q", code, out)
	}

	// Leave 32 MiB free, half the reserve.
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dataDir, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(s.dataDir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	err = syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize-32<<20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	_, err = c.Run(ctx, sbx.Image("busybox"))
	if !errors.Is(err, sbx.ErrResourceExhausted) || sbx.ReasonOf(err) != "DISK_POOL_FULL" || !strings.Contains(err.Error(), "free") {
		t.Errorf("create below the reserve: %v (reason %q); want RESOURCE_EXHAUSTED DISK_POOL_FULL saying how much is free", err, sbx.ReasonOf(err))
	}
	// The server looks every 2 s; small writes until the freeze shows.
	frozen := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, code := sh("dd if=/dev/zero of=/probe bs=64k count=1 conv=fsync 2>&1; rm -f /probe"); code == 0 && strings.Contains(out, "quota exceeded") {
			frozen = true
			break
		}
	}
	if !frozen {
		t.Fatalf("the sandbox's disk was not frozen within 30 s of the data dir going below its reserve:\n%s", tail(s.log(), 3000))
	}
	if out, code := sh("dd if=/dev/zero of=/more bs=1M count=8"); code == 0 || !strings.Contains(out, "quota exceeded") {
		t.Errorf("dd of 8 MiB into a frozen sandbox: code %d, %q; want Disk quota exceeded", code, out)
	}
	err = a.WriteFile(ctx, "/more", bytes.Repeat([]byte{'x'}, 8<<20), 0)
	if !errors.Is(err, sbx.ErrResourceExhausted) || sbx.ReasonOf(err) != "DISK_POOL_FULL" || !strings.Contains(err.Error(), "frozen") {
		t.Errorf("WriteFile into a frozen sandbox: %v (reason %q); want RESOURCE_EXHAUSTED DISK_POOL_FULL saying frozen", err, sbx.ReasonOf(err))
	}
	if !strings.Contains(s.log(), "sandboxes' disks are frozen") {
		t.Error("the server did not log the freeze")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	thawed := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, code := sh("dd if=/dev/zero of=/more bs=1M count=8 conv=fsync 2>/dev/null"); code == 0 {
			thawed = true
			break
		}
	}
	if !thawed {
		t.Fatalf("the sandbox's disk was not thawed within 30 s of space coming back:\n%s", tail(s.log(), 3000))
	}
	if out, code := sh("wc -c < /kept"); code != 0 || strings.TrimSpace(out) != "4194304" {
		t.Errorf("the file written before the freeze: %q (code %d)", out, code)
	}
	// Run returns once the create is accepted; the exec waits until the
	// sandbox runs.
	b, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatalf("create after space came back: %v", err)
	}
	p, err := b.Exec(ctx, []string{"echo", "ok"})
	if err != nil {
		t.Fatalf("exec in the sandbox created after space came back: %v", err)
	}
	if res, err := p.Result(); err != nil || string(res.Stdout) != "ok\n" {
		t.Errorf("exec in the sandbox created after space came back: %+v, %v", res, err)
	}
}

package lifecycle

import (
	"context"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestDiskBytesValidation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxDiskBytes = 1 << 30 })
	ctx := context.Background()
	for _, n := range []int64{-1, 1 << 20, 2 << 30} {
		_, err := e.m.Create(ctx, tenant, CreateRequest{Image: "busybox", Resources: sandbox.Resources{DiskBytes: n}})
		wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec)
		if !strings.Contains(err.Error(), "disk_bytes") {
			t.Errorf("disk_bytes %d: %v does not name the field", n, err)
		}
	}
	sb := e.create(t, CreateRequest{Image: "busybox", Resources: sandbox.Resources{DiskBytes: 512 << 20}})
	if sb.Spec.Resources.DiskBytes != 512<<20 {
		t.Errorf("resources %+v, want the disk limit asked for", sb.Spec.Resources)
	}

	// A server without disk limits refuses any.
	off := newEnv(t, nil)
	_, err := off.m.Create(ctx, tenant, CreateRequest{Image: "busybox", Resources: sandbox.Resources{DiskBytes: 512 << 20}})
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonInvalidSpec)
	off.create(t, CreateRequest{Image: "busybox"})
}

func TestPoolKeyDisk(t *testing.T) {
	plain, _ := poolKey("busybox", sandbox.Resources{CPUMillis: 500})
	disk, _ := poolKey("busybox", sandbox.Resources{CPUMillis: 500, DiskBytes: 1 << 30})
	if plain == disk || !strings.HasSuffix(disk, " disk=1073741824") || strings.Contains(plain, "disk") {
		t.Errorf("pool keys %q and %q: a disk limit must make its own pool, and leave keys without one as they were", plain, disk)
	}
}

func TestPoolDiskBytesValidation(t *testing.T) {
	for _, max := range []int64{0, 1 << 30} {
		cfg := Config{MaxDiskBytes: max, Pools: []PoolConfig{{Image: "busybox", MinIdle: 1, Resources: sandbox.Resources{DiskBytes: 2 << 30}}}}.withDefaults()
		if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "disk bytes") {
			t.Errorf("max disk %d: a pool of 2 GiB sandboxes: %v", max, err)
		}
	}
}

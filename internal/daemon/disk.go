package daemon

import (
	"fmt"
	"log/slog"

	"github.com/sbx-run/sbx/internal/runtime/local"
)

// Disk limits: defaults of the disk fields of Config.
const (
	defaultDiskBytes = 10 << 30
	defaultMaxDisk   = 100 << 30
)

// validateDisk checks the disk-limit fields.
func (c *Config) validateDisk() error {
	switch c.DiskLimits {
	case "on":
	case "off":
		return nil
	default:
		return fmt.Errorf("disk limits %q must be on (each sandbox's writable layer is a size-limited btrfs subvolume) or off (unbounded)", c.DiskLimits)
	}
	switch {
	case c.MaxDiskBytes < local.MinDiskBytes || c.MaxDiskBytes > local.MaxDiskBytes:
		return fmt.Errorf("max disk %d bytes is out of range %d MiB..%d GiB", c.MaxDiskBytes, local.MinDiskBytes>>20, local.MaxDiskBytes>>30)
	case c.DefaultDiskBytes < local.MinDiskBytes || c.DefaultDiskBytes > c.MaxDiskBytes:
		return fmt.Errorf("default disk %d bytes is out of range: give %d MiB up to the max disk (%d bytes)", c.DefaultDiskBytes, local.MinDiskBytes>>20, c.MaxDiskBytes)
	case c.DiskReserveBytes < -1:
		return fmt.Errorf("disk reserve %d bytes is out of range: give 0 (%d MiB), -1 (no reserve) or a size in bytes", c.DiskReserveBytes, local.DefaultDiskReserve>>20)
	case c.DiskPoolBytes != 0 && (c.DiskPoolBytes < local.MinDiskPoolBytes || c.DiskPoolBytes > local.MaxDiskPoolBytes):
		return fmt.Errorf("disk pool size %d bytes is out of range: give 0 (half the free space of the data dir) or %d GiB..%d TiB", c.DiskPoolBytes, local.MinDiskPoolBytes>>30, local.MaxDiskPoolBytes>>40)
	}
	return nil
}

// openDiskPool finds or mounts the btrfs disk pool of the data dir, or
// returns nil when disk limits are off. The server calls it before it
// enters its private mount namespace (local.EnterMountNamespace), so that
// the pool is mounted in the host's, where it outlives the server as the
// sandboxes do; the re-executed child finds that mount.
func (c *Config) openDiskPool() (*local.DiskPool, error) {
	if c.DiskLimits == "off" {
		return nil, nil
	}
	p, err := local.OpenDiskPool(local.DiskPoolConfig{
		DataDir: c.DataDir,
		Size:    c.DiskPoolBytes,
		Reserve: c.DiskReserveBytes,
		NoMount: local.InPrivateMountNamespace(),
	})
	if err != nil {
		return nil, fmt.Errorf("disk pool for per-sandbox disk limits (turn them off with --disk-limits=off): %w", err)
	}
	return p, nil
}

// diskDefaults are the runtime's default disk limit and the lifecycle
// manager's maximum: none when disk limits are off.
func (c *Config) diskDefaults() (def, max int64) {
	if c.DiskLimits == "off" {
		return 0, 0
	}
	return c.DefaultDiskBytes, c.MaxDiskBytes
}

// logDiskPool says at start where sandboxes' disk goes, or that it is
// unbounded.
func logDiskPool(log *slog.Logger, p *local.DiskPool) {
	switch {
	case p == nil:
		log.Warn("disk limits are off (--disk-limits=off): a sandbox can fill the data dir's filesystem")
	case p.Image() == "":
		log.Info("disk limits on: sandboxes' writable layers are btrfs subvolumes of the data dir", "pool", p.Dir())
	default:
		log.Info("disk limits on: sandboxes' writable layers are btrfs subvolumes of the disk pool", "pool", p.Dir(), "image", p.Image(), "device", p.Device())
	}
}

// releaseDiskPool detaches the pool's mount when the server exits (see
// local.DiskPool.Unmount: running sandboxes keep it alive, and a restarted
// server mounts the same loop device again).
func releaseDiskPool(p *local.DiskPool) {
	if p == nil {
		return
	}
	if err := p.Unmount(); err != nil {
		slog.Warn("detach the disk pool", "pool", p.Dir(), "err", err)
	}
}

// releaseRunRoot unmounts the run root if no sandbox is left in it
// (local.ReleaseRunRoot); with sandboxes it stays for the next start.
func releaseRunRoot(dir string) {
	if err := local.ReleaseRunRoot(dir); err != nil {
		slog.Warn("release the run root", "run_root", dir, "err", err)
	}
}

package local

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDropDirty: the walk a sandbox's deletion adds, over a fresh
// sandbox's writable layer (the agent's dirs, three files in /etc, the
// overlay's work dir).
func BenchmarkDropDirty(b *testing.B) {
	dir := b.TempDir()
	for _, d := range []string{"upper/.sbx/bin", "upper/.sbx/state", "upper/etc", "work/work/incompat/volatile"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range []string{"upper/.sbx/bin/sbx-agent", "upper/etc/resolv.conf", "upper/etc/hosts", "upper/etc/hostname", "work/work/incompat/volatile/dirty"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dropDirty(dir)
	}
}

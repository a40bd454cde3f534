package secrets_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/secrets"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// BenchmarkResolve is what a create naming n secrets adds: one store read
// (SQLite) and n AES-GCM opens.
func BenchmarkResolve(b *testing.B) {
	for _, n := range []int{1, 5, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "sbx.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			c, _ := secrets.NewCipher(bytes.Repeat([]byte{1}, secrets.KeySize))
			m := secrets.NewManager(st, c)
			var refs []sandbox.SecretRef
			for i := range n {
				name := fmt.Sprintf("S%d", i)
				if _, _, err := m.Set(context.Background(), "t1", name, "value-of-a-typical-api-token-0123456789"); err != nil {
					b.Fatal(err)
				}
				refs = append(refs, sandbox.SecretRef{Name: name})
			}
			b.ReportAllocs()
			for b.Loop() {
				if env, err := m.Resolve(context.Background(), "t1", refs); err != nil || len(env) != n {
					b.Fatal(env, err)
				}
			}
		})
	}
}

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestUserNamespaceDefault: a server on its defaults (--userns auto) on
// this kernel runs each sandbox in a user namespace of its own, whose root
// is an unprivileged host uid of sbx's ranges, different per sandbox.
func TestUserNamespaceDefault(t *testing.T) {
	s := startServer(t)
	c := s.client()
	ctx := ctxT(t, 2*time.Minute)
	bases := map[uint64]bool{}
	for range 2 {
		sb, err := c.Run(ctx, sbx.Image("busybox"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := sb.Exec(ctx, []string{"cat", "/proc/self/uid_map"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(res.Stdout))
		if len(f) != 3 || f[0] != "0" || f[2] != "65536" {
			t.Fatalf("uid_map in the sandbox: %q, want 0 <base> 65536", res.Stdout)
		}
		base, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil || base < 1<<30 {
			t.Fatalf("sandbox root is host uid %s, want one of sbx's ranges (from 2^30)", f[1])
		}
		if bases[base] {
			t.Errorf("two sandboxes share the host uid range at %d", base)
		}
		bases[base] = true
	}
	if strings.Contains(s.log(), "without user namespaces") {
		t.Errorf("the server ran sandboxes without user namespaces:\n%s", tail(s.log(), 2000))
	}
}

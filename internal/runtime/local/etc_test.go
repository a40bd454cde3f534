package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestEtcHostsWithoutNetwork checks /etc/hosts and /etc/hostname of a
// sandbox without a network (bridge networking: TestSandboxNetwork): its
// name points at a loopback address, and localhost and its name resolve.
func TestEtcHostsWithoutNetwork(t *testing.T) {
	testenv.Require(t, true, "crun")
	rt := newRuntime(t, "crun")
	ref, _ := env(t)
	id := runtimetest.NewID("etc")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	hosts := sh(t, ag, "cat /etc/hosts").Stdout
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost", "127.0.1.1\t" + id + "\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
		}
	}
	if got := sh(t, ag, "cat /etc/hostname").Stdout; got != id+"\n" {
		t.Errorf("/etc/hostname: %q", got)
	}
	sh(t, ag, "mkdir -p /www && echo local > /www/index.html && httpd -p 8080 -h /www")
	if got := sh(t, ag, "wget -q -O- http://localhost:8080/ && wget -q -O- http://$(hostname):8080/").Stdout; got != "local\nlocal\n" {
		t.Errorf("GET by localhost and by hostname: %q", got)
	}
	// The sandbox may add names of its own; /etc/hostname is read-only.
	if r := sh(t, ag, "echo '10.9.9.9 extra' >> /etc/hosts && grep -c extra /etc/hosts; echo x > /etc/hostname; echo rc=$?"); !strings.Contains(r.Stdout, "1\n") || strings.Contains(r.Stdout, "rc=0") {
		t.Errorf("appending to /etc/hosts and writing /etc/hostname: %q %q", r.Stdout, r.Stderr)
	}
	// Delete removes the files with the sandbox's dir.
	b, err := rt.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	dir := b.dir
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, hostsFile)); !os.IsNotExist(err) {
		t.Errorf("hosts file after Delete: %v", err)
	}
}

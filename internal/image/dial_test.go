package image

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestPrivateRegistry checks the guard against server-side request
// forgery: a registry on a loopback address is refused unless the config
// names it (as insecure, allowed or a mirror), whether the reference gives
// the address or a name that resolves to it, and a configured registry
// cannot redirect a download to an address the config does not name.
func TestPrivateRegistry(t *testing.T) {
	reg := newRegistry(t)
	img := image(t, layer(t, file("f", "1")))
	push(t, reg.host+"/x/y:1", img)
	push(t, reg.host+"/library/busybox:latest", img)
	port := reg.host[strings.LastIndex(reg.host, ":")+1:]
	open := func(cfg Config) *Store {
		cfg.Root = t.TempDir()
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	for _, ref := range []string{reg.host + "/x/y:1", "localhost:" + port + "/x/y:1"} {
		_, err := open(Config{}).Get(bg, ref, nil)
		wantErr(t, err, sandbox.ErrPermissionDenied, sandbox.ReasonRegistryNotAllowed, "--insecure-registry")
		if !strings.Contains(err.Error(), "127.0.0.1") && !strings.Contains(err.Error(), "::1") {
			t.Errorf("refusal of %s does not name the address: %v", ref, err)
		}
	}
	for name, cfg := range map[string]Config{
		"insecure": {Insecure: []string{reg.host}},
		"allowed":  {AllowedRegistries: []string{reg.host}},
	} {
		if _, err := open(cfg).Get(bg, reg.host+"/x/y:1", nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := open(Config{Mirrors: map[string][]string{"docker.io": {"http://" + reg.host}}}).Get(bg, "busybox", nil); err != nil {
		t.Errorf("mirror: %v", err)
	}

	// The trusted registry sends blob downloads to localhost, a name the
	// config does not trust.
	reg.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Host == reg.host {
			http.Redirect(w, r, "http://localhost:"+port+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	})
	_, err := open(Config{Insecure: []string{reg.host}}).Get(bg, reg.host+"/x/y:1", nil)
	wantErr(t, err, sandbox.ErrPermissionDenied, sandbox.ReasonRegistryNotAllowed, "localhost")
}

func TestPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "224.0.0.1": false,
		"::1": false, "::": false, "fe80::1": false, "fd00::1": false, "::ffff:127.0.0.1": false,
		"8.8.8.8": true, "151.101.1.1": true, "2a00:1450::1": true,
	} {
		if got := publicAddr(netip.MustParseAddr(addr).Unmap()); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

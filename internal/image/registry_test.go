package image

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestMirror(t *testing.T) {
	reg := newRegistry(t)
	img := image(t, layer(t, file("bin/busybox", "bb")))
	push(t, reg.host+"/library/busybox:latest", img)
	dead := newRegistry(t)
	dead.srv.Close()
	// The dead mirror is tried first and skipped; the registry itself
	// (Docker Hub) is never reached because the live mirror answers.
	s := newStore(t, Config{Mirrors: map[string][]string{"docker.io": {"http://" + dead.host, "http://" + reg.host}}})
	got, err := s.Get(bg, "busybox", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != "docker.io/library/busybox:latest" || got.Digest != digestOf(t, img) {
		t.Fatalf("got %s %s", got.Ref, got.Digest)
	}
	if _, err := New(Config{Root: t.TempDir(), Mirrors: map[string][]string{"docker.io": {"ftp://x"}}}); sandbox.KindOf(err) != sandbox.ErrInvalidArgument {
		t.Fatalf("bad mirror accepted: %v", err)
	}
}

// aliasTransport sends connections for alias (any port) to target, so that a
// registry on 127.0.0.1 can be reached under a name the client would
// otherwise talk HTTPS to.
func aliasTransport(alias, target string) http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, alias+":") {
			addr = target
		}
		return d.DialContext(ctx, network, addr)
	}
	return tr
}

func TestPlainHTTPRegistry(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/x/y:1", image(t, layer(t, file("f", "1"))))
	ref := "registry.test:5000/x/y:1"

	secure := newStore(t, Config{})
	secure.transport = aliasTransport("registry.test", reg.host)
	_, err := secure.Get(bg, ref, nil)
	wantErr(t, err, sandbox.ErrUnavailable, sandbox.ReasonRegistryUnavailable, "registry.test:5000")

	s := newStore(t, Config{Insecure: []string{"registry.test:5000"}})
	s.transport = aliasTransport("registry.test", reg.host)
	got, err := s.Get(bg, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != ref {
		t.Fatalf("ref %s", got.Ref)
	}
}

func TestCredentials(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/p/img:1", image(t, layer(t, file("f", "1"))))
	reg.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		u, p, ok := r.BasicAuth()
		if (ok && u == "alice" && p == "s3cret") || r.Header.Get("Authorization") == "Bearer tok3n" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	ref := reg.host + "/p/img:1"
	_, err := newStore(t, Config{}).Get(bg, ref, nil)
	wantErr(t, err, sandbox.ErrPermissionDenied, sandbox.ReasonRegistryAuth, ref)
	_, err = newStore(t, Config{Auth: map[string]Credentials{reg.host: {Username: "alice", Password: "wrong"}}}).Get(bg, ref, nil)
	wantErr(t, err, sandbox.ErrPermissionDenied, sandbox.ReasonRegistryAuth, reg.host)
	if _, err := newStore(t, Config{Auth: map[string]Credentials{reg.host: {Username: "alice", Password: "s3cret"}}}).Get(bg, ref, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := newStore(t, Config{Auth: map[string]Credentials{reg.host: {Token: "tok3n"}}}).Get(bg, ref, nil); err != nil {
		t.Fatal(err)
	}
}

// badBlob serves the blob with the given digest damaged by mangle.
func badBlob(digest string, mangle func(w http.ResponseWriter, body []byte)) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		mangle(w, rec.Body.Bytes())
	}
}

func TestDigestMismatchAndTruncationLeaveNothing(t *testing.T) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	l := layer(t, file("big", string(big)))
	ld, _ := l.Digest()
	for name, mangle := range map[string]func(http.ResponseWriter, []byte){
		"corrupt": func(w http.ResponseWriter, b []byte) {
			b[len(b)/2] ^= 0xff
			w.Write(b)
		},
		"short": func(w http.ResponseWriter, b []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)/2))
			w.Write(b[:len(b)/2])
		},
		"cut": func(w http.ResponseWriter, b []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-body
		},
	} {
		t.Run(name, func(t *testing.T) {
			reg := newRegistry(t)
			push(t, reg.host+"/d/img:1", image(t, l))
			reg.setWrap(badBlob(ld.String(), mangle))
			s := newStore(t, Config{})
			_, err := s.Get(bg, reg.host+"/d/img:1", nil)
			wantErr(t, err, sandbox.ErrUnavailable, sandbox.ReasonDigestMismatch, reg.host+"/d/img:1")
			for _, d := range []string{dirLayers, dirTemp, dirManifests, dirRefs} {
				if ents, _ := os.ReadDir(s.path(d)); len(ents) != 0 {
					t.Fatalf("%s/ holds %v after a failed pull", d, ents)
				}
			}
			reg.setWrap(nil)
			if _, err := s.Get(bg, reg.host+"/d/img:1", nil); err != nil {
				t.Fatalf("pull after the registry healed: %v", err)
			}
		})
	}
}

// A mirror that has no such image, with the registry itself unreachable,
// is IMAGE_NOT_FOUND: the name is wrong, whatever the network does.
func TestMirrorNotFoundWinsOverUnreachableRegistry(t *testing.T) {
	mirror := newRegistry(t)
	dead := newRegistry(t)
	dead.srv.Close()
	s := newStore(t, Config{Mirrors: map[string][]string{"registry.test": {"http://" + mirror.host}}, Insecure: []string{"registry.test"}})
	s.transport = aliasTransport("registry.test", dead.host)
	_, err := s.Get(bg, "registry.test/library/nosuch:1", nil)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonImageNotFound, "could not be reached")

	// Without a mirror's answer, the unreachable registry is what the user hears.
	s = newStore(t, Config{Insecure: []string{"registry.test"}})
	s.transport = aliasTransport("registry.test", dead.host)
	_, err = s.Get(bg, "registry.test/library/nosuch:1", nil)
	wantErr(t, err, sandbox.ErrUnavailable, sandbox.ReasonRegistryUnavailable, "cannot be reached")
}

func TestOnPullCountsRegistryPulls(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/library/busybox:latest", image(t, layer(t, file("bin/busybox", "bb"))))
	type call struct {
		ref string
		err error
	}
	var calls []call
	s := newStore(t, Config{Insecure: []string{reg.host}, OnPull: func(ref string, _ time.Duration, err error) {
		calls = append(calls, call{ref, err})
	}})
	if _, err := s.Get(bg, reg.host+"/library/busybox", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, reg.host+"/library/busybox", nil); err != nil { // cached: no pull
		t.Fatal(err)
	}
	if _, err := s.Pull(bg, reg.host+"/library/nosuch:1", nil); err == nil {
		t.Fatal("pulled an image that does not exist")
	}
	if len(calls) != 2 || calls[0].ref != reg.host+"/library/busybox:latest" || calls[0].err != nil ||
		sandbox.ReasonOf(calls[1].err) != sandbox.ReasonImageNotFound {
		t.Fatalf("OnPull calls: %+v", calls)
	}
}

func TestAllowedRegistries(t *testing.T) {
	reg := newRegistry(t)
	img := image(t, layer(t, file("bin/busybox", "bb")))
	push(t, reg.host+"/library/busybox:latest", img)
	push(t, reg.host+"/other:1", img)
	var dialed []string
	s := newStore(t, Config{
		Mirrors:           map[string][]string{"docker.io": {"http://" + reg.host}},
		AllowedRegistries: []string{reg.host},
	})
	// Record every connection: none may go anywhere but the allowed registry.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		return d.DialContext(ctx, network, addr)
	}
	s.transport = tr

	// Through the allowed mirror.
	if _, err := s.Get(bg, "busybox", nil); err != nil {
		t.Fatal(err)
	}
	// Directly from the allowed registry.
	if _, err := s.Get(bg, reg.host+"/other:1", nil); err != nil {
		t.Fatal(err)
	}
	// Missing in the mirror: Docker Hub itself is not allowed, so the
	// answer is the mirror's NOT_FOUND, not a try of the internet.
	if _, err := s.Get(bg, "python:3.11", nil); sandbox.ReasonOf(err) != sandbox.ReasonImageNotFound {
		t.Fatalf("missing image: %v", err)
	}
	// A registry outside the list is refused before any traffic.
	_, err := s.Get(bg, "10.1.2.3:5000/secret:1", nil)
	if sandbox.KindOf(err) != sandbox.ErrPermissionDenied || sandbox.ReasonOf(err) != sandbox.ReasonRegistryNotAllowed {
		t.Fatalf("disallowed registry: %v", err)
	}
	for _, a := range dialed {
		if a != reg.host {
			t.Fatalf("dialed %s, outside the allowed registries", a)
		}
	}
}

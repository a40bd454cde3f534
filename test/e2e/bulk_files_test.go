package e2e

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// lenReader reports a size up front (so the SDK takes the bulk path) and
// fails after part of it.
type lenReader struct {
	r    io.Reader
	left int
	fail bool
}

func (l *lenReader) Len() int { return l.left }

func (l *lenReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= n
	if err == io.EOF && l.fail {
		return n, errors.New("source broke")
	}
	return n, err
}

// TestBulkFiles moves large files through the real server and agent over
// the bulk endpoint, and checks that paths stay inside the sandbox.
func TestBulkFiles(t *testing.T) {
	s := startServer(t)
	c := s.client()
	ctx := ctxT(t, 3*time.Minute)
	sb, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Delete(ctx) })
	run := func(argv ...string) string {
		t.Helper()
		p, err := sb.Exec(ctx, argv)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(res.Stdout))
	}

	// From memory and from a file (sendfile), back byte for byte.
	data := make([]byte, 24<<20+7)
	rand.Read(data)
	if n, err := sb.WriteFileFrom(ctx, "/tmp/big/blob", bytes.NewReader(data), 0o600); err != nil || n != int64(len(data)) {
		t.Fatalf("write: %d %v", n, err)
	}
	var got bytes.Buffer
	if n, err := sb.ReadFileTo(ctx, "/tmp/big/blob", &got); err != nil || n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read back %d bytes (%v), same: %v", n, err, bytes.Equal(got.Bytes(), data))
	}
	if out := run("stat", "-c", "%s %a %u", "/tmp/big/blob"); out != fmt.Sprintf("%d 600 0", len(data)) {
		t.Fatalf("in the sandbox: %q", out)
	}
	local := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(local, data[:5<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sb.WriteFileFrom(ctx, "/tmp/big/from-file", f, 0o644)
	f.Close()
	if err != nil || n != 5<<20 {
		t.Fatalf("write from a file: %d %v", n, err)
	}
	if out := run("md5sum", "/tmp/big/from-file"); !strings.HasPrefix(out, md5hex(data[:5<<20])) {
		t.Fatalf("md5 in the sandbox: %q", out)
	}

	// A source that fails midway leaves the old file, and no temporary file.
	err = func() error {
		_, err := sb.WriteFileFrom(ctx, "/tmp/big/blob", &lenReader{r: bytes.NewReader(data[:3<<20]), left: 4 << 20, fail: true}, 0o600)
		return err
	}()
	if !errors.Is(err, sbx.ErrInvalidArgument) {
		t.Fatalf("a failing source: %v", err)
	}
	got.Reset()
	if _, err := sb.ReadFileTo(ctx, "/tmp/big/blob", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("after a failed write: %d bytes, %v", got.Len(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for out := run("ls", "-a", "/tmp/big"); out != ".\n..\nblob\nfrom-file"; out = run("ls", "-a", "/tmp/big") {
		if time.Now().After(deadline) {
			t.Fatalf("left in /tmp/big: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Paths resolve inside the sandbox: a symlink to /etc, and `..`, never
	// reach the host's files.
	probe := fmt.Sprintf("sbx-bulk-probe-%d", time.Now().UnixNano())
	run("ln", "-s", "/etc", "/tmp/esc")
	blob := bytes.Repeat([]byte("x"), 2<<20)
	for _, p := range []string{"/tmp/esc/" + probe, "/../../../../tmp/" + probe} {
		if err := sb.WriteFile(ctx, p, blob, 0o644); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
	}
	for _, host := range []string{"/etc/" + probe, "/tmp/" + probe} {
		if _, err := os.Stat(host); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a write in the sandbox reached the host's %s (%v)", host, err)
		}
	}
	if out := run("wc", "-c", "/etc/"+probe, "/tmp/"+probe); !strings.Contains(out, fmt.Sprintf("%d /etc/%s", 2<<20, probe)) {
		t.Fatalf("in the sandbox: %q", out)
	}
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	run("ln", "-s", "/etc/passwd", "/tmp/pw")
	pw, err := sb.ReadFile(ctx, "/tmp/pw")
	if err != nil || bytes.Equal(pw, hostPasswd) || string(pw) != run("cat", "/etc/passwd")+"\n" {
		t.Fatalf("read through a symlink: %q, %v", pw, err)
	}

	// Another tenant gets NotFound for this sandbox, as from the RPCs.
	other := s.newTenant("bulk-other")
	req, _ := http.NewRequest(http.MethodGet, s.url()+"/v1/sandboxes/"+sb.ID()+"/file?"+url.Values{"path": {"/tmp/big/blob"}}.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+other)
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Sbx-Reason") != "SANDBOX_NOT_FOUND" {
		t.Fatalf("another tenant: %s %s", resp.Status, resp.Header.Get("Sbx-Reason"))
	}
}

func md5hex(b []byte) string { return fmt.Sprintf("%x", md5.Sum(b)) }

// TestBulkFilesRunsc moves files over the bulk path under gVisor, whose
// agent serves it as under crun (the kernel calls are gVisor's).
func TestBulkFilesRunsc(t *testing.T) {
	testenv.Require(t, true, "runsc")
	s := startServer(t, "--runtime", "runsc")
	c := s.client()
	ctx := ctxT(t, 3*time.Minute)
	sb, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Delete(ctx) })
	data := make([]byte, 9<<20+3)
	rand.Read(data)
	if err := sb.WriteFile(ctx, "/tmp/blob", data, 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := sb.ReadFile(ctx, "/tmp/blob")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if fi, err := sb.Stat(ctx, "/tmp/blob"); err != nil || fi.Size != int64(len(data)) || fi.Mode.Perm() != 0o640 {
		t.Fatalf("stat: %+v %v", fi, err)
	}
	_, err = sb.WriteFileFrom(ctx, "/tmp/blob", &lenReader{r: bytes.NewReader(data[:2<<20]), left: 3 << 20, fail: true}, 0o600)
	if !errors.Is(err, sbx.ErrInvalidArgument) {
		t.Fatalf("a failing source: %v", err)
	}
	if got, err := sb.ReadFile(ctx, "/tmp/blob"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a failed write: %d bytes, %v", len(got), err)
	}
}

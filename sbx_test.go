package sbx

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sbx-run/sbx/cmd/sbx/fakeapi"
)

// newFakeServer starts the in-memory API and a client of it.
func newFakeServer(t *testing.T) (*fakeapi.Server, *Client) {
	t.Helper()
	f, url := fakeapi.Start(t)
	c, err := NewClient(WithURL(url), WithAPIKey(fakeapi.Key), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func runIdle(t *testing.T, c *Client, opts ...RunOption) *Sandbox {
	t.Helper()
	sb, err := c.Run(context.Background(), opts...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return sb
}

func TestErrorsRoundTrip(t *testing.T) {
	f, c := newFakeServer(t)
	ctx := context.Background()

	_, err := c.Get(ctx, "sb-nope")
	if !errors.Is(err, ErrNotFound) || ReasonOf(err) != "SANDBOX_NOT_FOUND" {
		t.Fatalf("Get unknown: got %v (reason %q), want ErrNotFound SANDBOX_NOT_FOUND", err, ReasonOf(err))
	}
	if errors.Is(err, ErrInternal) {
		t.Fatal("a NotFound error also matches ErrInternal")
	}
	if !strings.Contains(err.Error(), "sbx ls") {
		t.Errorf("message lost: %v", err)
	}

	_, err = c.Run(ctx, Image("quota"))
	var se *Error
	if !errors.Is(err, ErrResourceExhausted) || !errors.As(err, &se) || se.Reason != "QUOTA_EXCEEDED" || RetryAfterOf(err) != 3*time.Second {
		t.Fatalf("quota: got %v (reason %q, retry %v)", err, ReasonOf(err), RetryAfterOf(err))
	}

	_, err = c.Run(ctx, Lifetime(100000*time.Hour))
	if !errors.Is(err, ErrInvalidArgument) || ReasonOf(err) != "LIFETIME_OUT_OF_RANGE" {
		t.Fatalf("lifetime: got %v", err)
	}

	bad, err := NewClient(WithURL(c.URL()), WithAPIKey("wrong"), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Run(ctx); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong key: got %v, want ErrUnauthenticated", err)
	}

	sb := runIdle(t, c, Image("bad"))
	if err := sb.Wait(ctx); !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "image \"bad\" not found") {
		t.Fatalf("Wait on a failed start: got %v", err)
	}

	sb = runIdle(t, c)
	if _, err := sb.Exec(ctx, []string{"nosuch"}); !errors.Is(err, ErrNotFound) || ReasonOf(err) != "COMMAND_NOT_FOUND" {
		t.Fatalf("exec of a missing command: got %v", err)
	}
	_ = f
}

func TestUnreachableServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := NewClient(WithURL("http://"+addr), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Run(context.Background())
	if !errors.Is(err, ErrUnavailable) || ReasonOf(err) != ReasonServerUnreachable || !strings.Contains(err.Error(), "sbx serve") {
		t.Fatalf("got %v, want ErrUnavailable %s naming `sbx serve`", err, ReasonServerUnreachable)
	}
}

func TestExecStreamsOutput(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c)
	// Exec waits for the sandbox itself: no Wait call here.
	p, err := sb.Exec(ctx, []string{"echo", "hello", "world"}, Env(map[string]string{"X": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() == "" || p.PID() != 42 {
		t.Errorf("id %q pid %d", p.ID(), p.PID())
	}
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello world\nX=1\n" {
		t.Fatalf("stdout %q", out)
	}
	res, err := p.Result()
	if err != nil {
		t.Fatal(err)
	}
	// Stdout was read already, so the Result holds none of it.
	if res.ExitCode != 0 || len(res.Stdout) != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestExecResultCollectsUnreadOutput(t *testing.T) {
	_, c := newFakeServer(t)
	sb := runIdle(t, c)
	p, err := sb.Exec(context.Background(), []string{"fail", "3", "boom"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	if err != nil {
		t.Fatalf("without Check a non-zero exit is no error: %v", err)
	}
	if res.ExitCode != 3 || string(res.Stdout) != "partial\n" || string(res.Stderr) != "boom\n" {
		t.Fatalf("result %+v", res)
	}
}

func TestExecCheck(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c)
	p, err := sb.Exec(ctx, []string{"fail", "3", "boom"}, Check())
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("got %v, want *ExitError", err)
	}
	if ee.ExitCode != 3 || string(ee.Stderr) != "boom\n" || res != ee.Result {
		t.Fatalf("exit error %+v", ee)
	}
	if !strings.Contains(err.Error(), "code 3") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("message %q", err)
	}

	p, err = sb.Exec(ctx, []string{"fail", "4", "x"}, Check())
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(); code != 4 || !errors.As(err, &ee) {
		t.Fatalf("Wait: %d %v", code, err)
	}

	p, err = sb.Exec(ctx, []string{"echo", "ok"}, Check())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Result(); err != nil {
		t.Fatalf("zero exit under Check: %v", err)
	}
}

func TestExecStdin(t *testing.T) {
	_, c := newFakeServer(t)
	sb := runIdle(t, c)
	p, err := sb.Exec(context.Background(), []string{"cat"}, Stdin())
	if err != nil {
		t.Fatal(err)
	}
	if p.Stdin == nil {
		t.Fatal("Stdin is nil under the Stdin option")
	}
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := io.WriteString(p.Stdin, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "one two three" {
		t.Fatalf("stdout %q", res.Stdout)
	}
	if _, err := p.Stdin.Write([]byte("late")); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestExecSignal(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c)
	p, err := sb.Exec(ctx, []string{"sleep"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Resize(ctx, 40, 100); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(ctx, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 137 || res.Signal != "SIGKILL" {
		t.Fatalf("result %+v", res)
	}
}

func TestFiles(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c)

	// Bigger than a few chunks, and not a multiple of the chunk size.
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	n, err := sb.WriteFileFrom(ctx, "/work/big.bin", bytes.NewReader(data), 0o600)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("WriteFileFrom: %d %v", n, err)
	}
	got, err := sb.ReadFile(ctx, "/work/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, differing from the %d written", len(got), len(data))
	}
	var buf bytes.Buffer
	if n, err := sb.ReadFileTo(ctx, "/work/big.bin", &buf); err != nil || n != int64(len(data)) {
		t.Fatalf("ReadFileTo: %d %v", n, err)
	}

	if err := sb.WriteFile(ctx, "/work/small.txt", []byte("hi"), 0); err != nil {
		t.Fatal(err)
	}
	// A failing source leaves the old file as it was.
	failing := io.MultiReader(bytes.NewReader(make([]byte, 2<<20)), iotest.ErrReader(errors.New("disk gone")))
	if _, err := sb.WriteFileFrom(ctx, "/work/small.txt", failing, 0); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("failing source: %v", err)
	}
	if got, err := sb.ReadFile(ctx, "/work/small.txt"); err != nil || string(got) != "hi" {
		t.Fatalf("after a failed write: %q %v", got, err)
	}

	if _, err := sb.ReadFile(ctx, "/nope"); !errors.Is(err, ErrNotFound) || ReasonOf(err) != "FILE_NOT_FOUND" {
		t.Fatalf("missing file: %v", err)
	}
	fi, err := sb.Stat(ctx, "/work")
	if err != nil || !fi.IsDir || !fi.Mode.IsDir() {
		t.Fatalf("Stat dir: %+v %v", fi, err)
	}
	entries, err := sb.ListDir(ctx, "/work")
	if err != nil || len(entries) != 2 || entries[0].Name != "big.bin" || entries[0].Size != int64(len(data)) {
		t.Fatalf("ListDir: %+v %v", entries, err)
	}
}

func TestLifecycle(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()

	sb := runIdle(t, c, Command("exit", "3"), Tags("a", "b"), RequestID("req-1"),
		Resources{MemoryBytes: 1 << 30}, MountedFile("/etc/cfg", []byte("x")))
	if st := sb.Info().State; st != StatePending {
		t.Fatalf("Run returned state %s, want PENDING (accepted, not started)", st)
	}
	again := runIdle(t, c, Command("exit", "3"), RequestID("req-1"))
	if again.ID() != sb.ID() {
		t.Fatalf("retried Run made %s, want %s", again.ID(), sb.ID())
	}
	code, err := sb.ExitCode(ctx)
	if err != nil || code != 3 {
		t.Fatalf("ExitCode: %d %v", code, err)
	}
	info := sb.Info()
	if info.State != StateFailed || !info.Exited || info.Resources.MemoryBytes != 1<<30 {
		t.Fatalf("info %+v", info)
	}
	var out, errOut bytes.Buffer
	if err := sb.Logs(ctx, &out, &errOut, LogOptions{Follow: true}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "main output\n" || errOut.String() != "main error\n" {
		t.Fatalf("logs %q %q", out.String(), errOut.String())
	}

	idle := runIdle(t, c)
	if err := idle.Stop(ctx, Grace(time.Second)); err != nil {
		t.Fatal(err)
	}
	if idle.Info().State != StateTerminated {
		t.Fatalf("after Stop: %s", idle.Info().State)
	}
	if _, err := idle.ExitCode(ctx); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("ExitCode of a stopped idle sandbox: %v", err)
	}
	if _, err := idle.Exec(ctx, []string{"echo"}); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("Exec in a stopped sandbox: %v", err)
	}
	if err := c.Delete(ctx, idle.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, idle.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	got, err := c.Get(ctx, sb.ID())
	if err != nil || got.Info().ExitCode != 3 {
		t.Fatalf("Get: %+v %v", got, err)
	}
	if fresh, err := c.FromID(sb.ID()).Refresh(ctx); err != nil || fresh.ID != sb.ID() {
		t.Fatalf("FromID.Refresh: %+v %v", fresh, err)
	}
}

func TestList(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		runIdle(t, c, Tags("batch"))
	}
	runIdle(t, c, Tags("other"))
	ended := runIdle(t, c, Tags("batch"))
	if err := ended.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// The fake pages by two, so these cross pages.
	all, err := c.List(ctx, ListOptions{Tags: []string{"batch"}})
	if err != nil || len(all) != 5 {
		t.Fatalf("List batch: %d %v", len(all), err)
	}
	all, err = c.List(ctx, ListOptions{Tags: []string{"batch"}, All: true})
	if err != nil || len(all) != 6 {
		t.Fatalf("List batch --all: %d %v", len(all), err)
	}
	some, err := c.List(ctx, ListOptions{Limit: 3})
	if err != nil || len(some) != 3 {
		t.Fatalf("List limit: %d %v", len(some), err)
	}
	if _, err := c.List(ctx, ListOptions{States: []State{"BOGUS"}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad state: %v", err)
	}
}

func TestSessionLazyCreateAndClose(t *testing.T) {
	f, c := newFakeServer(t)
	ctx := context.Background()
	sess, err := c.NewSession(ctx, SandboxDefaults{Image: "python:3.11", Tags: []string{"s"}}, Lease(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sb := sess.Sandbox(Tags("x"))
	unused := sess.Sandbox()
	if sb.ID() != "" || f.Creates() != 0 {
		t.Fatal("Session.Sandbox created a sandbox before first use")
	}
	for i := 0; i < 3; i++ {
		p, err := sb.Exec(ctx, []string{"echo", "hi"}, Check())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Result(); err != nil {
			t.Fatal(err)
		}
	}
	if f.Creates() != 1 || sb.Info().SessionID != sess.ID() {
		t.Fatalf("%d creates, session %q; want 1 in %s", f.Creates(), sb.Info().SessionID, sess.ID())
	}

	// The heartbeat runs in the background (every second for a 1 s lease).
	deadline := time.Now().Add(30 * time.Second)
	for f.Heartbeats(sess.ID()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat arrived")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := sb.Refresh(ctx)
	if err != nil || info.State != StateTerminated {
		t.Fatalf("after Close: %+v %v", info, err)
	}
	if err := unused.Start(ctx); !errors.Is(err, ErrFailedPrecondition) || ReasonOf(err) != "SESSION_CLOSED" {
		t.Fatalf("using a sandbox of a closed session: %v", err)
	}
	if f.Creates() != 1 {
		t.Fatalf("%d creates after Close, want 1", f.Creates())
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvConfigDir, dir)
	t.Setenv(EnvURL, "")
	t.Setenv(EnvAPIKey, "")
	if got, want := DefaultCredentialsPath(), filepath.Join(dir, "credentials"); got != want {
		t.Fatalf("DefaultCredentialsPath %q, want %q", got, want)
	}
	c, err := NewClient()
	if err != nil || c.URL() != DefaultURL || c.apiKey != "" {
		t.Fatalf("no config: %v %q %q", err, c.URL(), c.apiKey)
	}

	if err := WriteCredentials(DefaultCredentialsPath(), Credentials{URL: "http://127.0.0.1:9999", APIKey: "file-key"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(DefaultCredentialsPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode: %v %v", fi.Mode(), err)
	}
	c, err = NewClient()
	if err != nil || c.URL() != "http://127.0.0.1:9999" || c.apiKey != "file-key" {
		t.Fatalf("from file: %v %q %q", err, c.URL(), c.apiKey)
	}

	// The environment wins, and the file's key is not sent to another server.
	t.Setenv(EnvURL, "http://10.0.0.1:7420/")
	c, err = NewClient()
	if err != nil || c.URL() != "http://10.0.0.1:7420" || c.apiKey != "" {
		t.Fatalf("env URL: %v %q %q", err, c.URL(), c.apiKey)
	}
	t.Setenv(EnvAPIKey, "env-key")
	c, err = NewClient(WithAPIKey("opt-key"))
	if err != nil || c.apiKey != "opt-key" {
		t.Fatalf("option key: %v %q", err, c.apiKey)
	}

	if _, err := NewClient(WithURL("127.0.0.1:7420")); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("URL without scheme: %v", err)
	}
	os.WriteFile(DefaultCredentialsPath(), []byte("{not json"), 0o600)
	t.Setenv(EnvURL, "")
	t.Setenv(EnvAPIKey, "")
	if _, err := NewClient(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("corrupt credentials: %v", err)
	}
}

func TestGRPCOverH2C(t *testing.T) {
	f, c := newFakeServer(t)
	g, err := NewClient(WithURL(c.URL()), WithAPIKey(fakeapi.Key), WithGRPC(), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sb, err := g.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sb.Exec(ctx, []string{"cat"}, Stdin(), Check())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.Stdin, "over grpc")
	p.Stdin.Close()
	res, err := p.Result()
	if err != nil || string(res.Stdout) != "over grpc" {
		t.Fatalf("%q %v", res.Stdout, err)
	}
	if err := sb.WriteFile(ctx, "/a", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Get(ctx, "sb-missing"); !errors.Is(err, ErrNotFound) || ReasonOf(err) != "SANDBOX_NOT_FOUND" {
		t.Fatalf("gRPC error mapping: %v", err)
	}
	_ = f
}

// cancellingReader returns zeros and cancels its context after limit bytes,
// like a caller giving up mid-upload.
type cancellingReader struct {
	n, limit int
	cancel   context.CancelFunc
}

func (r *cancellingReader) Read(b []byte) (int, error) {
	if r.n >= r.limit {
		r.cancel()
	}
	r.n += len(b)
	clear(b)
	return len(b), nil
}

func TestWriteFileCancelledCommitsNothing(t *testing.T) {
	_, c := newFakeServer(t)
	sb := runIdle(t, c)
	if err := sb.WriteFile(context.Background(), "/f", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err := sb.WriteFileFrom(ctx, "/f", &cancellingReader{limit: 3 << 20, cancel: cancel}, 0)
	if err == nil {
		t.Fatal("a cancelled upload succeeded")
	}
	if got, err := sb.ReadFile(context.Background(), "/f"); err != nil || string(got) != "old" {
		t.Fatalf("after a cancelled upload: %d bytes, %v", len(got), err)
	}
}

// BenchmarkExecRoundTrip measures the SDK's own cost of one exec (start,
// output, exit) against the in-memory API on loopback; the real server's
// figure is measured by the end-to-end benchmarks.
func BenchmarkExecRoundTrip(b *testing.B) {
	f, url := fakeapi.Start(b)
	_ = f
	c, err := NewClient(WithURL(url), WithAPIKey(fakeapi.Key), WithCredentialsFile("/nonexistent"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sb, err := c.Run(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		p, err := sb.Exec(ctx, []string{"echo", "x"}, Check())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Result(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRunRetriesCreateQueueFull(t *testing.T) {
	f, c := newFakeServer(t)
	ctx := context.Background()
	// Refused twice, then created: Run hides the refusals.
	sb := runIdle(t, c, Image("busy:2"))
	if sb.ID() == "" {
		t.Fatal("no sandbox after retries")
	}
	// With retries off the first refusal comes back, with its exact delay
	// (RetryInfo), not the header's whole seconds.
	noRetry, err := NewClient(WithURL(c.URL()), WithAPIKey(fakeapi.Key), WithCredentialsFile("/nonexistent"), WithCreateRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = noRetry.Run(ctx, Image("busy:1"))
	if !errors.Is(err, ErrResourceExhausted) || ReasonOf(err) != ReasonCreateQueueFull || RetryAfterOf(err) != 10*time.Millisecond {
		t.Fatalf("Run with retries off: %v (reason %q, retry %v), want CREATE_QUEUE_FULL after 10ms", err, ReasonOf(err), RetryAfterOf(err))
	}
	// More refusals than retries: the last refusal comes back.
	few, err := NewClient(WithURL(c.URL()), WithAPIKey(fakeapi.Key), WithCredentialsFile("/nonexistent"), WithCreateRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := few.Run(ctx, Image("busy:5")); ReasonOf(err) != ReasonCreateQueueFull {
		t.Fatalf("Run with 2 retries against 5 refusals: %v", err)
	}
	_ = f
}

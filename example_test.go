package sbx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/sbx-run/sbx"
)

// These examples need a running server (`sbx serve`), so they are compiled
// but not run by `go test`.

func ExampleNewClient() {
	// Options win over SBX_URL / SBX_API_KEY, which win over the
	// credentials file that a local `sbx serve` writes.
	client, err := sbx.NewClient(sbx.WithURL("http://127.0.0.1:7420"), sbx.WithAPIKey(os.Getenv("MY_KEY")))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(client.URL())
}

func ExampleClient_Run() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, err := client.Run(ctx,
		sbx.Image("python:3.11"),
		sbx.Env(map[string]string{"MODE": "eval"}),
		sbx.Tags("rollout-17"),
		sbx.Lifetime(10*time.Minute),
		sbx.Resources{CPUMillis: 1000, MemoryBytes: 1 << 30},
		sbx.MountedFile("/etc/task.json", []byte(`{"n": 3}`)),
		sbx.RequestID("rollout-17-worker-3"), // a retried Run returns the same sandbox
	)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Stop(ctx)
	// Run returned as soon as the server accepted the sandbox; Exec waits
	// until it runs.
	p, err := sb.Exec(ctx, []string{"python", "-c", "print(6*7)"}, sbx.Check())
	if err != nil {
		log.Fatal(err)
	}
	res, err := p.Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(res.Stdout))
}

func ExampleRun() {
	// The package-level Run uses a client configured from the environment.
	ctx := context.Background()
	sb, err := sbx.Run(ctx, sbx.Image("python:3.11"), sbx.Command("python", "-c", "print('hi')"))
	if err != nil {
		log.Fatal(err)
	}
	code, err := sb.ExitCode(ctx) // waits until the main command exits
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit code", code)
}

func ExampleSandbox_Exec() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx)
	defer sb.Stop(ctx)

	// Stream the output while the command runs.
	p, err := sb.Exec(ctx, []string{"sh", "-c", "for i in 1 2 3; do echo $i; sleep 1; done"},
		sbx.WorkingDir("/tmp"), sbx.Timeout(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(os.Stdout, p.Stdout)
	code, err := p.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit code", code)
}

func ExampleSandbox_Exec_stdin() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx)
	defer sb.Stop(ctx)

	p, err := sb.Exec(ctx, []string{"python", "-c", "import sys; print(sys.stdin.read().upper())"}, sbx.Stdin())
	if err != nil {
		log.Fatal(err)
	}
	io.WriteString(p.Stdin, "hello")
	p.Stdin.Close() // EOF
	res, err := p.Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(res.Stdout))
}

func ExampleCheck() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx)
	defer sb.Stop(ctx)

	p, err := sb.Exec(ctx, []string{"sh", "-c", "echo oops >&2; exit 3"}, sbx.Check())
	if err != nil {
		log.Fatal(err)
	}
	_, err = p.Result()
	var exitErr *sbx.ExitError
	if errors.As(err, &exitErr) {
		fmt.Println(exitErr.ExitCode, string(exitErr.Stderr))
	}
}

func ExampleSandbox_WriteFile() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx)
	defer sb.Stop(ctx)

	if err := sb.WriteFile(ctx, "/work/input.txt", []byte("data"), 0o644); err != nil {
		log.Fatal(err)
	}
	b, err := sb.ReadFile(ctx, "/work/input.txt")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
}

func ExampleSandbox_WriteFileFrom() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx)
	defer sb.Stop(ctx)

	// Stream a large local file in without holding it in memory, and back.
	f, err := os.Open("dataset.tar")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := sb.WriteFileFrom(ctx, "/data/dataset.tar", f, 0o644); err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := sb.ReadFileTo(ctx, "/data/dataset.tar", &buf)
	fmt.Println(n, err)
}

func ExampleSandbox_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx, sbx.Image("python:3.11"))
	if err := sb.Wait(ctx); err != nil {
		// A bad image or a failed start: the error says which.
		log.Fatal(err)
	}
	fmt.Println(sb.Info().State) // RUNNING
}

func ExampleSandbox_WaitUntilComplete() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx, sbx.Command("sh", "-c", "exit 2"))
	info, err := sb.WaitUntilComplete(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.State, info.ExitCode) // FAILED 2
}

func ExampleSandbox_Logs() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx, sbx.Command("python", "train.py"))
	// Follow the main command's output until it exits.
	if err := sb.Logs(ctx, os.Stdout, os.Stderr, sbx.LogOptions{Follow: true}); err != nil {
		log.Fatal(err)
	}
}

func ExampleSandbox_Stats() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx, sbx.Resources{MemoryBytes: 512 << 20})
	defer sb.Stop(ctx)
	p, err := sb.Exec(ctx, []string{"python", "-c", "x = bytearray(300 << 20)"})
	if err != nil {
		log.Fatal(err)
	}
	p.Wait()
	// The peak shows what the process needed, even after it exited.
	st, err := sb.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cpu %v, memory %d of %d bytes (peak %d), %d OOM kills\n",
		st.CPU, st.MemoryBytes, st.MemoryLimitBytes, st.MemoryPeakBytes, st.OOMKills)
}

func ExampleSandbox_Stop() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Run(ctx)
	if err := sb.Stop(ctx, sbx.Grace(5*time.Second)); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sb.Info().State) // TERMINATED
}

func ExampleClient_Get() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, err := client.Get(ctx, "sb-123")
	if errors.Is(err, sbx.ErrNotFound) {
		fmt.Println("no such sandbox")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sb.Info().State)
}

func ExampleClient_FromID() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	// A handle without a round trip, e.g. for an id stored elsewhere.
	sb := client.FromID("sb-123")
	p, err := sb.Exec(ctx, []string{"true"})
	if err != nil {
		log.Fatal(err)
	}
	p.Wait()
}

func ExampleClient_List() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	list, err := client.List(ctx, sbx.ListOptions{Tags: []string{"rollout-17"}, States: []sbx.State{sbx.StateRunning}})
	if err != nil {
		log.Fatal(err)
	}
	for _, sb := range list {
		fmt.Println(sb.ID(), sb.Info().Image)
	}
}

func ExampleClient_Delete() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	if err := client.Delete(ctx, "sb-123"); err != nil && !errors.Is(err, sbx.ErrNotFound) {
		log.Fatal(err)
	}
}

func ExampleClient_NewSession() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sess, err := client.NewSession(ctx, sbx.SandboxDefaults{
		Image:    "python:3.11",
		Lifetime: 30 * time.Minute,
		Tags:     []string{"agent-run"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Close stops every sandbox of the session; if this process dies, the
	// server does it once the session's lease runs out.
	defer sess.Close(ctx)

	sb := sess.Sandbox() // created on first use
	p, err := sb.Exec(ctx, []string{"python", "--version"}, sbx.Check())
	if err != nil {
		log.Fatal(err)
	}
	res, _ := p.Result()
	fmt.Print(string(res.Stdout))
}

func ExampleError() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	_, err := client.Run(ctx, sbx.Image("python:3.11"))
	switch {
	case errors.Is(err, sbx.ErrResourceExhausted):
		// Over quota: the server says when to retry.
		time.Sleep(sbx.RetryAfterOf(err))
	case errors.Is(err, sbx.ErrUnavailable):
		fmt.Println("server down:", err)
	case err != nil:
		fmt.Println(sbx.ReasonOf(err), err)
	}
}

func ExamplePort() {
	// Serve a directory on port 8080 and publish it: privately (the API
	// key is needed) and, on 9000, publicly at an unguessable URL.
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, err := client.Run(ctx,
		sbx.Image("python:3.11"),
		sbx.Command("python", "-m", "http.server", "8080"),
		sbx.Port{Port: 8080},
		sbx.Port{Port: 9000, Public: true},
	)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Stop(ctx)
	for _, p := range sb.Ports() {
		fmt.Println(p.Port, p.Public, p.URL, p.PathURL)
	}
}

func ExampleSandbox_ExposePort() {
	ctx := context.Background()
	client, _ := sbx.NewClient()
	sb, _ := client.Get(ctx, "sb-123")
	p, err := sb.ExposePort(ctx, 3000, true) // public: no key needed
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("share", p.URL)
	// Later: stop publishing it.
	if err := sb.UnexposePort(ctx, 3000); err != nil {
		log.Fatal(err)
	}
}

func ExampleSandbox_DialPort() {
	// A raw TCP connection to port 5432 in the sandbox, through the
	// server; the port need not be published.
	ctx := context.Background()
	client, _ := sbx.NewClient()
	conn, err := client.FromID("sb-123").DialPort(ctx, 5432)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "ping\n")
}

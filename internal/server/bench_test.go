package server_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// BenchmarkExecRoundTrip measures the server's share of an exec of `true`:
// auth, record lookup, agent call and event streaming over h2c loopback,
// with the fake runtime's in-process agent.
func BenchmarkExecRoundTrip(b *testing.B) {
	// "sdk" is the Go SDK's setting: it does not accept gzip, which the
	// server would otherwise spend on every small event.
	variants := map[string][]connect.ClientOption{
		"connect": nil,
		"grpc":    {connect.WithGRPC()},
		"sdk":     {connect.WithAcceptCompression("gzip", nil, nil)},
	}
	for name, opts := range variants {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, options{})
			c := e.sandboxes(e.keyA, opts...)
			ctx := context.Background()
			cr, err := c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{}))
			if err != nil {
				b.Fatal(err)
			}
			c.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: cr.Msg.Sandbox.Id, Until: sbxv1.WaitCondition_WAIT_CONDITION_RUNNING}))
			req := &sbxv1.ExecRequest{SandboxId: cr.Msg.Sandbox.Id, Command: []string{"exit", "0"}}
			b.ResetTimer()
			for b.Loop() {
				s, err := c.Exec(ctx, connect.NewRequest(req))
				if err != nil {
					b.Fatal(err)
				}
				for s.Receive() {
				}
				if err := s.Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

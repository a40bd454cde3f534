package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestFilesRoundTrip(t *testing.T) {
	e := newEnv(t, options{})
	c := e.sandboxes(e.keyA)
	ctx := context.Background()
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})

	data := make([]byte, 3<<20+123)
	rand.Read(data)
	ws := c.WriteFile(ctx)
	if err := ws.Send(&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Header_{Header: &sbxv1.WriteFileRequest_Header{SandboxId: sb.Id, Path: "/data/blob", Mode: 0o600}}}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		end := min(off+1<<20, len(data))
		if err := ws.Send(&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Data{Data: data[off:end]}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := ws.CloseAndReceive()
	if err != nil || resp.Msg.Size != int64(len(data)) {
		t.Fatalf("WriteFile: %v %v", err, resp)
	}

	rs, err := c.ReadFile(ctx, connect.NewRequest(&sbxv1.ReadFileRequest{SandboxId: sb.Id, Path: "/data/blob"}))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for rs.Receive() {
		if len(rs.Msg().Data) > 1<<20 {
			t.Fatalf("chunk of %d bytes", len(rs.Msg().Data))
		}
		got.Write(rs.Msg().Data)
	}
	if rs.Err() != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("ReadFile: %v, %d bytes back of %d", rs.Err(), got.Len(), len(data))
	}

	st, err := c.Stat(ctx, connect.NewRequest(&sbxv1.StatRequest{SandboxId: sb.Id, Path: "/data/blob"}))
	if err != nil || st.Msg.Info.Size != int64(len(data)) || st.Msg.Info.Mode&0o777 != 0o600 {
		t.Fatalf("Stat: %v %+v", err, st)
	}
	if _, err := c.MakeDir(ctx, connect.NewRequest(&sbxv1.MakeDirRequest{SandboxId: sb.Id, Path: "/data/sub"})); err != nil {
		t.Fatal(err)
	}
	ls, err := c.ListDir(ctx, connect.NewRequest(&sbxv1.ListDirRequest{SandboxId: sb.Id, Path: "/data"}))
	if err != nil || len(ls.Msg.Entries) != 2 || ls.Msg.Entries[0].Name != "blob" || !ls.Msg.Entries[1].IsDir {
		t.Fatalf("ListDir: %v %+v", err, ls)
	}
	if _, err := c.Remove(ctx, connect.NewRequest(&sbxv1.RemoveRequest{SandboxId: sb.Id, Path: "/data", Recursive: true})); err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat(ctx, connect.NewRequest(&sbxv1.StatRequest{SandboxId: sb.Id, Path: "/data/blob"}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonFileNotFound)

	_, err = c.Stat(ctx, connect.NewRequest(&sbxv1.StatRequest{SandboxId: sb.Id, Path: "a\x00b"}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidPath)
	ws = c.WriteFile(ctx)
	ws.Send(&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Data{Data: []byte("no header")}})
	_, err = ws.CloseAndReceive()
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)
}

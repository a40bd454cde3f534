package fakeapi

import (
	"context"
	"path"
	"sort"
	"strings"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

func (f *Server) ReadFile(_ context.Context, req *connect.Request[sbxv1.ReadFileRequest], stream *connect.ServerStream[sbxv1.ReadFileResponse]) error {
	sb, err := f.running(req.Msg.GetSandboxId())
	if err != nil {
		return err
	}
	f.mu.Lock()
	data, ok := sb.files[req.Msg.GetPath()]
	f.mu.Unlock()
	if !ok {
		return fakeErr(connect.CodeNotFound, "FILE_NOT_FOUND", req.Msg.GetPath()+": no such file in the sandbox", 0)
	}
	for len(data) > 0 {
		n := min(len(data), 1<<20)
		if err := stream.Send(&sbxv1.ReadFileResponse{Data: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func (f *Server) WriteFile(_ context.Context, stream *connect.ClientStream[sbxv1.WriteFileRequest]) (*connect.Response[sbxv1.WriteFileResponse], error) {
	if !stream.Receive() {
		return nil, fakeErr(connect.CodeInvalidArgument, "INVALID_ARGUMENT", "no header", 0)
	}
	hdr := stream.Msg().GetHeader()
	sb, err := f.running(hdr.GetSandboxId())
	if err != nil {
		return nil, err
	}
	var data []byte
	for stream.Receive() {
		if stream.Msg().GetHeader() != nil {
			// As the real server: a second header aborts the write.
			return nil, fakeErr(connect.CodeInvalidArgument, "INVALID_ARGUMENT", "only the first WriteFile message may carry the header", 0)
		}
		data = append(data, stream.Msg().GetData()...)
	}
	if err := stream.Err(); err != nil {
		return nil, err // an aborted upload commits nothing
	}
	f.mu.Lock()
	sb.files[hdr.GetPath()] = data
	sb.modes[hdr.GetPath()] = hdr.GetMode()
	f.mu.Unlock()
	return connect.NewResponse(&sbxv1.WriteFileResponse{Size: int64(len(data))}), nil
}

// Stat and ListDir treat every prefix of a file path as a directory.
func (f *Server) Stat(_ context.Context, req *connect.Request[sbxv1.StatRequest]) (*connect.Response[sbxv1.StatResponse], error) {
	sb, err := f.running(req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info := sb.stat(path.Clean(req.Msg.GetPath()))
	if info == nil {
		return nil, fakeErr(connect.CodeNotFound, "FILE_NOT_FOUND", req.Msg.GetPath()+": no such file in the sandbox", 0)
	}
	return connect.NewResponse(&sbxv1.StatResponse{Info: info}), nil
}

func (sb *fakeSandbox) stat(p string) *sbxv1.FileInfo {
	if data, ok := sb.files[p]; ok {
		mode := sb.modes[p]
		if mode == 0 {
			mode = 0o644
		}
		return &sbxv1.FileInfo{Name: path.Base(p), Path: p, Size: int64(len(data)), Mode: mode}
	}
	for fp := range sb.files {
		if p == "/" || strings.HasPrefix(fp, p+"/") {
			return &sbxv1.FileInfo{Name: path.Base(p), Path: p, IsDir: true, Mode: uint32(1<<31 | 0o755)}
		}
	}
	return nil
}

func (f *Server) ListDir(_ context.Context, req *connect.Request[sbxv1.ListDirRequest]) (*connect.Response[sbxv1.ListDirResponse], error) {
	sb, err := f.running(req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := path.Clean(req.Msg.GetPath())
	seen := map[string]bool{}
	var out []*sbxv1.FileInfo
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for fp := range sb.files {
		if !strings.HasPrefix(fp, prefix) {
			continue
		}
		name := strings.SplitN(fp[len(prefix):], "/", 2)[0]
		if !seen[name] {
			seen[name] = true
			out = append(out, sb.stat(prefix+name))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return connect.NewResponse(&sbxv1.ListDirResponse{Entries: out}), nil
}

func (f *Server) MakeDir(_ context.Context, req *connect.Request[sbxv1.MakeDirRequest]) (*connect.Response[sbxv1.MakeDirResponse], error) {
	if _, err := f.running(req.Msg.GetSandboxId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.MakeDirResponse{}), nil
}

func (f *Server) StreamLogs(_ context.Context, req *connect.Request[sbxv1.StreamLogsRequest], stream *connect.ServerStream[sbxv1.StreamLogsResponse]) error {
	f.mu.Lock()
	sb, err := f.get(req.Msg.GetSandboxId())
	var log []byte
	if err == nil && sb.w.State < sbxv1.SandboxState_SANDBOX_STATE_RUNNING {
		// As the real server: logs need a started sandbox.
		err = fakeErr(connect.CodeFailedPrecondition, "SANDBOX_NOT_RUNNING", "sandbox "+sb.w.Id+" is "+sb.w.State.String()+": wait for it to be RUNNING", 0)
	}
	if err == nil {
		if req.Msg.GetFollow() {
			f.advance(sb, true)
		}
		log = append(log, sb.log...)
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if len(log) == 0 {
		return nil
	}
	if err := stream.Send(&sbxv1.StreamLogsResponse{Data: &sbxv1.StreamLogsResponse_Stdout{Stdout: log}}); err != nil {
		return err
	}
	return stream.Send(&sbxv1.StreamLogsResponse{Data: &sbxv1.StreamLogsResponse_Stderr{Stderr: []byte("main error\n")}})
}

// FileMode returns the Unix mode the last WriteFile of path in sandbox id
// asked for (0 if none).
func (f *Server) FileMode(id, path string) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb := f.sandboxes[id]; sb != nil {
		return sb.modes[path]
	}
	return 0
}

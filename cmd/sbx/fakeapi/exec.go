package fakeapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

func (f *Server) Exec(ctx context.Context, req *connect.Request[sbxv1.ExecRequest], stream *connect.ServerStream[sbxv1.ExecEvent]) error {
	if _, err := f.running(req.Msg.GetSandboxId()); err != nil {
		return err
	}
	argv := req.Msg.GetCommand()
	if argv[0] == "nosuch" {
		return fakeErr(connect.CodeNotFound, "COMMAND_NOT_FOUND", "nosuch: command not found in the sandbox's PATH", 0)
	}
	f.mu.Lock()
	f.next++
	execID := fmt.Sprintf("ex-%d", f.next)
	p := &fakeProc{stdin: make(chan []byte, 16), closed: make(chan struct{}), signal: make(chan string, 1)}
	f.procs[execID] = p
	f.mu.Unlock()
	send := func(ev *sbxv1.ExecEvent) error { return stream.Send(ev) }
	if err := send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Started{Started: &sbxv1.ExecStarted{ExecId: execID, Pid: 42}}}); err != nil {
		return err
	}
	exit := func(code int32, sig string) error {
		return send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Exit{Exit: &sbxv1.ExecExit{Code: code, Signal: sig}}})
	}
	switch argv[0] {
	case "echo":
		out := strings.Join(argv[1:], " ") + "\n"
		if v := req.Msg.GetEnv()["X"]; v != "" {
			out += "X=" + v + "\n"
		}
		send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stdout{Stdout: []byte(out)}})
		return exit(0, "")
	case "fail":
		code, _ := strconv.Atoi(argv[1])
		send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stdout{Stdout: []byte("partial\n")}})
		send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stderr{Stderr: []byte(argv[2] + "\n")}})
		return exit(int32(code), "")
	case "cat":
		for {
			select {
			case b := <-p.stdin:
				send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stdout{Stdout: b}})
			case <-p.closed:
				// Drain what was written before the close.
				for {
					select {
					case b := <-p.stdin:
						send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stdout{Stdout: b}})
						continue
					default:
					}
					break
				}
				return exit(0, "")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	case "sleep":
		select {
		case sig := <-p.signal:
			return exit(137, sig)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return exit(127, "")
}

func (f *Server) proc(id string) (*fakeProc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.procs[id]
	if !ok {
		return nil, fakeErr(connect.CodeNotFound, "PROCESS_NOT_FOUND", "no process "+id, 0)
	}
	return p, nil
}

func (f *Server) WriteStdin(_ context.Context, req *connect.Request[sbxv1.WriteStdinRequest]) (*connect.Response[sbxv1.WriteStdinResponse], error) {
	p, err := f.proc(req.Msg.GetExecId())
	if err != nil {
		return nil, err
	}
	p.stdin <- append([]byte(nil), req.Msg.GetData()...)
	return connect.NewResponse(&sbxv1.WriteStdinResponse{}), nil
}

func (f *Server) CloseStdin(_ context.Context, req *connect.Request[sbxv1.CloseStdinRequest]) (*connect.Response[sbxv1.CloseStdinResponse], error) {
	p, err := f.proc(req.Msg.GetExecId())
	if err != nil {
		return nil, err
	}
	p.once.Do(func() { close(p.closed) })
	return connect.NewResponse(&sbxv1.CloseStdinResponse{}), nil
}

func (f *Server) SignalExec(_ context.Context, req *connect.Request[sbxv1.SignalExecRequest]) (*connect.Response[sbxv1.SignalExecResponse], error) {
	p, err := f.proc(req.Msg.GetExecId())
	if err != nil {
		return nil, err
	}
	select {
	case p.signal <- req.Msg.GetSignal():
	default:
	}
	return connect.NewResponse(&sbxv1.SignalExecResponse{}), nil
}

func (f *Server) ResizeExec(_ context.Context, req *connect.Request[sbxv1.ResizeExecRequest]) (*connect.Response[sbxv1.ResizeExecResponse], error) {
	if _, err := f.proc(req.Msg.GetExecId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.ResizeExecResponse{}), nil
}

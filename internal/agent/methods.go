package agent

import (
	"context"

	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/protolite"
)

// The agent's methods on the wire (internal/agentwire): the procedures of
// the services in api/sbx/agent/v1, named as there.
const (
	methodPing       = "sbx.agent.v1.AgentService/Ping"
	methodInit       = "sbx.agent.v1.AgentService/Init"
	methodWaitMain   = "sbx.agent.v1.AgentService/WaitMain"
	methodLogs       = "sbx.agent.v1.AgentService/Logs"
	methodStart      = "sbx.agent.v1.ProcessService/Start"
	methodAttach     = "sbx.agent.v1.ProcessService/Attach"
	methodList       = "sbx.agent.v1.ProcessService/List"
	methodWriteStdin = "sbx.agent.v1.ProcessService/WriteStdin"
	methodCloseStdin = "sbx.agent.v1.ProcessService/CloseStdin"
	methodSignal     = "sbx.agent.v1.ProcessService/Signal"
	methodResize     = "sbx.agent.v1.ProcessService/Resize"
	methodRead       = "sbx.agent.v1.FilesystemService/Read"
	methodWrite      = "sbx.agent.v1.FilesystemService/Write"
	methodStat       = "sbx.agent.v1.FilesystemService/Stat"
	methodListDir    = "sbx.agent.v1.FilesystemService/ListDir"
	methodMakeDir    = "sbx.agent.v1.FilesystemService/MakeDir"
	methodRemove     = "sbx.agent.v1.FilesystemService/Remove"
	methodRename     = "sbx.agent.v1.FilesystemService/Rename"

	// methodReadFD and methodWriteFD are Read and Write that pass the
	// file's descriptor instead of its bytes where the socket allows
	// (fs_read.go, fs_write.go); agents before them answer "no method".
	methodReadFD  = "sbx.agent.v1.FilesystemService/ReadFD"
	methodWriteFD = "sbx.agent.v1.FilesystemService/WriteFD"
)

// movesData says which methods move file data: they restore GOMAXPROCS
// first (see StartEnv).
func movesData(method string) bool {
	return method == methodRead || method == methodWrite || method == methodReadFD || method == methodWriteFD
}

// methods returns the agent's methods.
func (s *Server) methods() map[string]agentwire.Method {
	a, p, f := &agentService{s}, &processService{s}, &filesystemService{s}
	return map[string]agentwire.Method{
		methodPing:       unary(a.Ping),
		methodInit:       withMax(unary(a.Init), maxInitBytes),
		methodWaitMain:   unary(a.WaitMain),
		methodLogs:       serverStream(a.Logs),
		methodStart:      serverStream(p.Start),
		methodAttach:     serverStream(p.Attach),
		methodList:       unary(p.List),
		methodWriteStdin: unary(p.WriteStdin),
		methodCloseStdin: unary(p.CloseStdin),
		methodSignal:     unary(p.Signal),
		methodResize:     unary(p.Resize),
		methodRead:       serverStream(f.Read),
		methodWrite:      {ClientStream: true, MaxMessage: maxMessageBytes, Handle: f.Write},
		methodReadFD:     serverStream(f.ReadFD),
		methodWriteFD:    {ClientStream: true, MaxMessage: maxMessageBytes, Handle: f.WriteFD},
		methodStat:       unary(f.Stat),
		methodListDir:    unary(f.ListDir),
		methodMakeDir:    unary(f.MakeDir),
		methodRemove:     unary(f.Remove),
		methodRename:     unary(f.Rename),
	}
}

// unary adapts a handler of one request and one answer.
func unary[Req any, PReq interface {
	*Req
	protolite.Message
}, Resp protolite.Message](h func(context.Context, PReq) (Resp, error)) agentwire.Method {
	return agentwire.Method{MaxMessage: maxMessageBytes, Handle: func(ctx context.Context, call *agentwire.ServerCall) error {
		req := PReq(new(Req))
		if err := call.Request(req); err != nil {
			return err
		}
		resp, err := h(ctx, req)
		if err != nil {
			return err
		}
		return call.Reply(resp)
	}}
}

// serverStream adapts a handler of one request that sends its answers.
func serverStream[Req any, PReq interface {
	*Req
	protolite.Message
}](h func(context.Context, PReq, *agentwire.ServerCall) error) agentwire.Method {
	return agentwire.Method{MaxMessage: maxMessageBytes, Handle: func(ctx context.Context, call *agentwire.ServerCall) error {
		req := PReq(new(Req))
		if err := call.Request(req); err != nil {
			return err
		}
		return h(ctx, req, call)
	}}
}

func withMax(m agentwire.Method, max int) agentwire.Method {
	m.MaxMessage = max
	return m
}

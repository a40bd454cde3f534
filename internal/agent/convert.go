package agent

import (
	"io/fs"
	"os"
	"time"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Conversions between the wire types and the domain types. Wire types stop
// here: the rest of the package works with sandbox types.

func imageFromWire(m *agentpb.ImageConfig) sandbox.ImageConfig {
	return sandbox.ImageConfig{Env: m.GetEnv(), WorkingDir: m.GetWorkingDir(), User: m.GetUser(), Entrypoint: m.GetEntrypoint(), Cmd: m.GetCmd()}
}

func imageToWire(c sandbox.ImageConfig) *agentpb.ImageConfig {
	return &agentpb.ImageConfig{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd}
}

func startFromWire(m *agentpb.StartSpec) sandbox.StartSpec {
	st := sandbox.StartSpec{Command: m.GetCommand(), Env: m.GetEnv(), WorkingDir: m.GetWorkingDir(), User: m.GetUser()}
	if n := m.GetDeadlineUnixNano(); n > 0 {
		st.Deadline = time.Unix(0, n)
	}
	for _, f := range m.GetFiles() {
		st.Files = append(st.Files, sandbox.File{Path: f.GetPath(), Content: f.GetContent(), Mode: sandbox.FileModeFromUnix(f.GetMode())})
	}
	return st
}

func startToWire(st sandbox.StartSpec) *agentpb.StartSpec {
	m := &agentpb.StartSpec{Command: st.Command, Env: st.Env, WorkingDir: st.WorkingDir, User: st.User}
	if !st.Deadline.IsZero() {
		m.DeadlineUnixNano = st.Deadline.UnixNano()
	}
	for _, f := range st.Files {
		m.Files = append(m.Files, &agentpb.File{Path: f.Path, Content: f.Content, Mode: sandbox.UnixMode(f.Mode)})
	}
	return m
}

func exitToWire(st *sandbox.ExitStatus) *agentpb.ExitStatus {
	if st == nil {
		return nil
	}
	return &agentpb.ExitStatus{Code: int32(st.Code), Signal: st.Signal, OomKilled: st.OOMKilled, TimedOut: st.TimedOut, AtUnixNano: st.At.UnixNano()}
}

func exitFromWire(m *agentpb.ExitStatus) *sandbox.ExitStatus {
	if m == nil {
		return nil
	}
	return &sandbox.ExitStatus{Code: int(m.GetCode()), Signal: m.GetSignal(), OOMKilled: m.GetOomKilled(), TimedOut: m.GetTimedOut(), At: unixNano(m.GetAtUnixNano())}
}

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func fileInfoToWire(path string, fi fs.FileInfo, target string) *agentpb.FileInfo {
	return &agentpb.FileInfo{
		Name: fi.Name(), Path: path, Size: fi.Size(), Mode: uint32(fi.Mode()),
		ModTimeUnixNano: fi.ModTime().UnixNano(), IsDir: fi.IsDir(), SymlinkTarget: target,
	}
}

func fileInfoFromWire(m *agentpb.FileInfo) sandbox.FileInfo {
	return sandbox.FileInfo{
		Name: m.GetName(), Path: m.GetPath(), Size: m.GetSize(), Mode: os.FileMode(m.GetMode()),
		ModTime: unixNano(m.GetModTimeUnixNano()), IsDir: m.GetIsDir(), Target: m.GetSymlinkTarget(),
	}
}

func processInfoToWire(p *process) *agentpb.ProcessInfo {
	return &agentpb.ProcessInfo{
		ExecId: p.id, Pid: int64(p.getPID()), Command: p.argv, Tag: p.tag, Tty: p.tty,
		StartedUnixNano: p.started.UnixNano(), Exit: exitToWire(p.status()),
	}
}

func processInfoFromWire(m *agentpb.ProcessInfo) sandbox.ProcessInfo {
	return sandbox.ProcessInfo{
		ExecID: m.GetExecId(), PID: int(m.GetPid()), Command: m.GetCommand(), Tag: m.GetTag(), TTY: m.GetTty(),
		Started: unixNano(m.GetStartedUnixNano()), Exit: exitFromWire(m.GetExit()),
	}
}

func streamToWire(s sandbox.Stream) agentpb.Stream {
	if s == sandbox.Stderr {
		return agentpb.Stream_STREAM_STDERR
	}
	return agentpb.Stream_STREAM_STDOUT
}

func streamFromWire(s agentpb.Stream) sandbox.Stream {
	if s == agentpb.Stream_STREAM_STDERR {
		return sandbox.Stderr
	}
	return sandbox.Stdout
}

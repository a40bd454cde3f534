package sbx

import (
	"io/fs"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// This file converts between the generated wire types and the package's
// own; no wire type appears in the exported API.

func stateFromWire(s sbxv1.SandboxState) State {
	name := strings.TrimPrefix(s.String(), "SANDBOX_STATE_")
	if name == "UNSPECIFIED" {
		return ""
	}
	return State(name)
}

func stateToWire(s State) (sbxv1.SandboxState, bool) {
	v, ok := sbxv1.SandboxState_value["SANDBOX_STATE_"+strings.ToUpper(string(s))]
	return sbxv1.SandboxState(v), ok && v != 0
}

func timeFromWire(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func resourcesToWire(r Resources) *sbxv1.Resources {
	if r == (Resources{}) {
		return nil
	}
	return &sbxv1.Resources{CpuMillis: r.CPUMillis, MemoryBytes: r.MemoryBytes, Pids: r.Pids, DiskBytes: r.DiskBytes}
}

func resourcesFromWire(r *sbxv1.Resources) Resources {
	return Resources{CPUMillis: r.GetCpuMillis(), MemoryBytes: r.GetMemoryBytes(), Pids: r.GetPids(), DiskBytes: r.GetDiskBytes()}
}

func infoFromWire(s *sbxv1.Sandbox) Info {
	info := Info{
		ID:          s.GetId(),
		SessionID:   s.GetSessionId(),
		Image:       s.GetImage(),
		Command:     s.GetCommand(),
		Env:         s.GetEnv(),
		WorkingDir:  s.GetWorkingDir(),
		User:        s.GetUser(),
		Tags:        s.GetTags(),
		Resources:   resourcesFromWire(s.GetResources()),
		Network:     networkFromWire(s.GetNetwork()),
		Secrets:     secretsFromWire(s.GetSecrets()),
		Ports:       exposedPortsFromWire(s.GetPorts()),
		Address:     s.GetAddress(),
		Lifetime:    time.Duration(s.GetMaxLifetimeSeconds()) * time.Second,
		State:       stateFromWire(s.GetState()),
		Reason:      s.GetReason(),
		RequestID:   s.GetRequestId(),
		CreatedAt:   timeFromWire(s.GetCreatedAt()),
		StartedAt:   timeFromWire(s.GetStartedAt()),
		EndedAt:     timeFromWire(s.GetEndedAt()),
		ExpiresAt:   timeFromWire(s.GetExpiresAt()),
		Transitions: make([]Transition, 0, len(s.GetTransitions())),
	}
	if s.ExitCode != nil {
		info.Exited, info.ExitCode = true, int(s.GetExitCode())
	}
	if x := s.GetExit(); x != nil {
		info.Exited, info.ExitCode, info.Signal = true, int(x.GetCode()), x.GetSignal()
		info.OOMKilled = x.GetOomKilled()
	}
	for _, t := range s.GetTransitions() {
		info.Transitions = append(info.Transitions, Transition{
			State: stateFromWire(t.GetState()), Reason: t.GetReason(), At: timeFromWire(t.GetAt()),
		})
	}
	return info
}

func fileInfoFromWire(f *sbxv1.FileInfo) FileInfo {
	return FileInfo{
		Name:    f.GetName(),
		Path:    f.GetPath(),
		Size:    f.GetSize(),
		Mode:    fs.FileMode(f.GetMode()),
		ModTime: timeFromWire(f.GetModTime()),
		IsDir:   f.GetIsDir(),
		Target:  f.GetSymlinkTarget(),
	}
}

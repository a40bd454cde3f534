package server

import (
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Conversions between wire and domain types. Wire types stop here.

var stateToWire = map[sandbox.State]sbxv1.SandboxState{
	sandbox.StatePending:     sbxv1.SandboxState_SANDBOX_STATE_PENDING,
	sandbox.StateCreating:    sbxv1.SandboxState_SANDBOX_STATE_CREATING,
	sandbox.StateRunning:     sbxv1.SandboxState_SANDBOX_STATE_RUNNING,
	sandbox.StateTerminating: sbxv1.SandboxState_SANDBOX_STATE_TERMINATING,
	sandbox.StateCompleted:   sbxv1.SandboxState_SANDBOX_STATE_COMPLETED,
	sandbox.StateFailed:      sbxv1.SandboxState_SANDBOX_STATE_FAILED,
	sandbox.StateTerminated:  sbxv1.SandboxState_SANDBOX_STATE_TERMINATED,
}

func stateFromWire(s sbxv1.SandboxState) (sandbox.State, bool) {
	for k, v := range stateToWire {
		if v == s {
			return k, true
		}
	}
	return "", false
}

// ts converts a time, leaving zero times unset.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func resourcesToWire(r sandbox.Resources) *sbxv1.Resources {
	return &sbxv1.Resources{CpuMillis: r.CPUMillis, MemoryBytes: r.MemoryBytes, Pids: r.Pids, DiskBytes: r.DiskBytes}
}

func resourcesFromWire(r *sbxv1.Resources) sandbox.Resources {
	return sandbox.Resources{CPUMillis: r.GetCpuMillis(), MemoryBytes: r.GetMemoryBytes(), Pids: r.GetPids(), DiskBytes: r.GetDiskBytes()}
}

// sandboxToWire converts a record, with its published ports' URLs and,
// once it runs, its network address.
func (d *deps) sandboxToWire(sb *sandbox.Sandbox) *sbxv1.Sandbox {
	w := &sbxv1.Sandbox{
		Id:                 sb.ID,
		SessionId:          sb.SessionID,
		Image:              sb.Spec.Image,
		Command:            sb.Start.Command,
		Env:                sb.Start.Env,
		WorkingDir:         sb.Start.WorkingDir,
		User:               sb.Start.User,
		Tags:               sb.Tags,
		Resources:          resourcesToWire(sb.Spec.Resources),
		Network:            networkToWire(&sb.Spec.Network),
		MaxLifetimeSeconds: int64(sb.MaxLifetime / time.Second),
		State:              stateToWire[sb.State],
		Reason:             sb.Reason,
		CreatedAt:          ts(sb.CreatedAt),
		StartedAt:          ts(sb.StartedAt),
		EndedAt:            ts(sb.EndedAt),
		ExpiresAt:          ts(sb.ExpiresAt),
		RequestId:          sb.RequestID,
		Secrets:            secretRefsToWire(sb.Start.Secrets),
	}
	if sb.Exit != nil {
		code := int32(sb.Exit.Code)
		w.ExitCode = &code
		w.Exit = &sbxv1.ExitStatus{Code: code, Signal: sb.Exit.Signal, OomKilled: sb.Exit.OOMKilled,
			TimedOut: sb.Exit.TimedOut, At: ts(sb.Exit.At)}
	}
	for _, t := range sb.Transitions {
		w.Transitions = append(w.Transitions, &sbxv1.Transition{State: stateToWire[t.State], Reason: t.Reason, At: ts(t.At)})
	}
	for _, p := range sb.Ports {
		w.Ports = append(w.Ports, d.portToWire(sb.ID, p))
	}
	if d.ports != nil && sb.State == sandbox.StateRunning {
		if a, ok := d.ports.Address(sb.ID); ok {
			w.Address = a.String()
		}
	}
	return w
}

// portToWire reports a published port with its URLs (none on a server
// without a proxy, which cannot have published it).
func (d *deps) portToWire(id string, p sandbox.Port) *sbxv1.ExposedPort {
	w := &sbxv1.ExposedPort{Port: int32(p.Port), Public: p.Public}
	if d.ports != nil {
		w.Url, w.PathUrl = d.ports.URLs(id, p)
	}
	return w
}

func sessionToWire(s *sandbox.Session) *sbxv1.Session {
	d := s.Defaults
	w := &sbxv1.Session{
		Id: s.ID,
		Defaults: &sbxv1.SessionDefaults{Image: d.Image, Tags: d.Tags, Env: d.Env,
			Resources: resourcesToWire(d.Resources), Network: networkToWire(d.Network),
			Secrets: secretRefsToWire(d.Secrets)},
		LeaseSeconds:  int64(s.Lease / time.Second),
		CreatedAt:     ts(s.CreatedAt),
		LastHeartbeat: ts(s.LastHeartbeat),
		ClosedAt:      ts(s.ClosedAt),
		CloseReason:   s.CloseReason,
	}
	if d.MaxLifetime > 0 {
		secs := int64(d.MaxLifetime / time.Second)
		w.Defaults.MaxLifetimeSeconds = &secs
	}
	if s.ClosedAt.IsZero() {
		w.ExpiresAt = ts(s.LastHeartbeat.Add(s.Lease))
	}
	return w
}

func fileInfoToWire(fi sandbox.FileInfo) *sbxv1.FileInfo {
	return &sbxv1.FileInfo{Name: fi.Name, Path: fi.Path, Size: fi.Size, Mode: uint32(fi.Mode),
		ModTime: ts(fi.ModTime), IsDir: fi.IsDir, SymlinkTarget: fi.Target}
}

// seconds converts a count of seconds from the wire, saturating instead of
// overflowing so that range checks see the huge value.
func seconds(n int64) time.Duration {
	const maxSecs = int64(1<<63-1) / int64(time.Second)
	if n > maxSecs {
		n = maxSecs
	} else if n < -maxSecs {
		n = -maxSecs
	}
	return time.Duration(n) * time.Second
}

func fileMode(m uint32) os.FileMode { return sandbox.FileModeFromUnix(m) }

package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/sbx-run/sbx"
)

// sandboxJSON is the JSON shape of a sandbox in `sbx ls --json` and
// `sbx inspect`: snake_case names like the API's JSON, durations in seconds.
type sandboxJSON struct {
	ID              string            `json:"id"`
	SessionID       string            `json:"session_id,omitempty"`
	Image           string            `json:"image"`
	Command         []string          `json:"command,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	WorkingDir      string            `json:"working_dir,omitempty"`
	User            string            `json:"user,omitempty"`
	Tags            []string          `json:"tags,omitempty"`
	Resources       resourcesJSON     `json:"resources"`
	LifetimeSeconds int64             `json:"max_lifetime_seconds"`
	State           sbx.State         `json:"state"`
	Reason          string            `json:"reason,omitempty"`
	ExitCode        *int              `json:"exit_code,omitempty"`
	Signal          string            `json:"signal,omitempty"`
	OOMKilled       bool              `json:"oom_killed,omitempty"`
	RequestID       string            `json:"request_id,omitempty"`
	CreatedAt       *time.Time        `json:"created_at,omitempty"`
	StartedAt       *time.Time        `json:"started_at,omitempty"`
	EndedAt         *time.Time        `json:"ended_at,omitempty"`
	ExpiresAt       *time.Time        `json:"expires_at,omitempty"`
	Transitions     []transitionJSON  `json:"transitions,omitempty"`
	Address         string            `json:"address,omitempty"`
	Ports           []portJSON        `json:"ports,omitempty"`
	Secrets         []secretRefJSON   `json:"secrets,omitempty"`
}

// portJSON is a published port, as in the API's JSON.
type portJSON struct {
	Port    int    `json:"port"`
	Public  bool   `json:"public"`
	URL     string `json:"url"`
	PathURL string `json:"path_url"`
}

func toPortJSON(p sbx.ExposedPort) portJSON {
	return portJSON{Port: p.Port, Public: p.Public, URL: p.URL, PathURL: p.PathURL}
}

type resourcesJSON struct {
	CPUMillis   int64 `json:"cpu_millis,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	Pids        int64 `json:"pids,omitempty"`
	DiskBytes   int64 `json:"disk_bytes,omitempty"`
}

type transitionJSON struct {
	State  sbx.State `json:"state"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toJSON(i sbx.Info) sandboxJSON {
	v := sandboxJSON{
		ID: i.ID, SessionID: i.SessionID, Image: i.Image, Command: i.Command, Env: i.Env,
		WorkingDir: i.WorkingDir, User: i.User, Tags: i.Tags,
		Resources:       resourcesJSON{CPUMillis: i.Resources.CPUMillis, MemoryBytes: i.Resources.MemoryBytes, Pids: i.Resources.Pids, DiskBytes: i.Resources.DiskBytes},
		LifetimeSeconds: int64(i.Lifetime / time.Second),
		State:           i.State, Reason: i.Reason, Signal: i.Signal, OOMKilled: i.OOMKilled, RequestID: i.RequestID,
		CreatedAt: optTime(i.CreatedAt), StartedAt: optTime(i.StartedAt), EndedAt: optTime(i.EndedAt), ExpiresAt: optTime(i.ExpiresAt),
	}
	if i.Exited {
		code := i.ExitCode
		v.ExitCode = &code
	}
	v.Address = i.Address
	for _, p := range i.Ports {
		v.Ports = append(v.Ports, toPortJSON(p))
	}
	for _, t := range i.Transitions {
		v.Transitions = append(v.Transitions, transitionJSON{State: t.State, Reason: t.Reason, At: t.At})
	}
	v.Secrets = toSecretRefsJSON(i.Secrets)
	return v
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

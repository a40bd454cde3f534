package sandbox

import (
	"os"
	"time"
)

// DefaultImage is the image a sandbox runs when the caller names none.
const DefaultImage = "python:3.11"

// Resources are the cgroup limits of one sandbox. Zero means "the configured
// default".
type Resources struct {
	// CPUMillis is CPU time in thousandths of a core (1000 = one core).
	CPUMillis int64
	// MemoryBytes is the memory limit; the sandbox is OOM-killed above it.
	MemoryBytes int64
	// Pids is the maximum number of processes and threads.
	Pids int64
	// DiskBytes bounds the sandbox's writable root filesystem (and so the
	// files written into it); writes past it fail with EDQUOT.
	DiskBytes int64 `json:",omitempty"`
}

// Spec is what a runtime needs to create the container of a sandbox: the
// parts that cannot change after start. Everything request-specific lives in
// StartSpec, so that a pre-started (warm) sandbox can serve any request for the
// same Spec.
type Spec struct {
	// ID is the sandbox id; also the container's hostname.
	ID string
	// Image is an image reference as a user writes it ("python:3.11").
	Image string
	// Resources are the cgroup limits.
	Resources Resources
	// Network is the sandbox's network policy; the zero value is the
	// default (internet allowed, host, private ranges and other sandboxes
	// blocked). A runtime without networking ignores it.
	Network NetworkPolicy `json:",omitzero"`
}

// NetworkPolicy is what a sandbox may reach and what may reach it. The zero
// value is the default: egress to the internet allowed; the host, other
// sandboxes, private ranges, link-local (cloud metadata) and multicast
// blocked; ingress allowed.
type NetworkPolicy struct {
	// DenyEgress blocks everything leaving the sandbox but DNS to the
	// resolver sbx provides (unless DenyDNS is set too).
	DenyEgress bool `json:",omitempty"`
	// DenyDNS blocks DNS to the resolver sbx provides.
	DenyDNS bool `json:",omitempty"`
	// AllowCIDRs restricts egress to these destinations.
	AllowCIDRs []CIDRRule `json:",omitempty"`
	// AllowNames restricts egress to these DNS names ("example.com",
	// "*.example.com"); enforced through sbx's resolver.
	AllowNames []string `json:",omitempty"`
	// DenyIngress rejects new connections from outside the host.
	DenyIngress bool `json:",omitempty"`
	// SessionPeers lets the sandbox talk to the other sandboxes of its
	// session that ask for it too.
	SessionPeers bool `json:",omitempty"`
	// PeerGroup is set by the server (never by a user) from the session
	// when SessionPeers is: sandboxes of one group reach each other.
	PeerGroup string `json:",omitempty"`
}

// CIDRRule allows egress to an IPv4 prefix, on every port or only on Ports.
type CIDRRule struct {
	CIDR  string
	Ports []int `json:",omitempty"`
}

// IsDefault reports whether p is the default policy.
func (p NetworkPolicy) IsDefault() bool {
	return !p.DenyEgress && !p.DenyDNS && len(p.AllowCIDRs) == 0 && len(p.AllowNames) == 0 &&
		!p.DenyIngress && !p.SessionPeers && p.PeerGroup == ""
}

// File is a file written into the sandbox before its main command starts.
type File struct {
	// Path is absolute inside the sandbox.
	Path string
	// Content is the whole file.
	Content []byte
	// Mode is the permission bits; 0 means 0444 (mounted files are read-only).
	Mode os.FileMode
}

// StartSpec is the request-specific part of a sandbox, applied by the agent
// after the container is up: environment, working directory, files and the
// main command.
type StartSpec struct {
	// Command is the main command (argv). Empty keeps the sandbox idle until
	// it is stopped.
	Command []string
	// Env is added to the image's environment; these values win.
	Env map[string]string
	// WorkingDir is the main command's and the default exec working dir;
	// empty means the image's, or "/".
	WorkingDir string
	// User is "uid", "uid:gid" or a name from the image's /etc/passwd; empty
	// means the image's user, or root.
	User string
	// Files are written before the main command starts.
	Files []File
	// Secrets name the tenant's stored secrets injected as environment
	// variables. Only the references are kept here (and in the store);
	// the lifecycle manager resolves the values at create and hands them
	// to the runtime's Start with Env, never into a record.
	Secrets []SecretRef `json:",omitempty"`
	// Deadline, when set, is when the sandbox's agent ends the sandbox by
	// itself if it still runs: the lifetime backstop for a server that is
	// down (its ExpiresAt plus a grace). The lifecycle manager sets it on
	// the copy the runtime gets; it is never stored, and Empty ignores it.
	Deadline time.Time `json:"-"`
}

// SecretRef names a stored secret and the environment variable it is
// injected as (EnvVar empty means Name).
type SecretRef struct {
	Name   string
	EnvVar string `json:",omitempty"`
}

// Var returns the environment variable r is injected as.
func (r SecretRef) Var() string {
	if r.EnvVar != "" {
		return r.EnvVar
	}
	return r.Name
}

// Empty reports whether s asks for nothing but the image's defaults: no
// command, env, working dir, user, files or secrets. A warm pool starts its
// sandboxes so, and the agent holds such a start as provisional.
func (s StartSpec) Empty() bool {
	return len(s.Command) == 0 && len(s.Env) == 0 && s.WorkingDir == "" && s.User == "" && len(s.Files) == 0 && len(s.Secrets) == 0
}

// ImageConfig is what an image says about how to run it.
type ImageConfig struct {
	Env        []string // "K=V"
	WorkingDir string
	User       string
	Entrypoint []string
	Cmd        []string
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when killed by a signal.
	Code int
	// Signal names the signal that killed the process ("SIGKILL"), if any.
	Signal string
	// OOMKilled is set when the kernel's OOM killer ended it.
	OOMKilled bool
	// TimedOut is set when a per-exec timeout ended it, or, for a main
	// command, when the agent ended the sandbox at its StartSpec.Deadline.
	TimedOut bool
	// At is when it ended.
	At time.Time
}

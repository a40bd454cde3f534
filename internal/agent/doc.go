// Package agent is the sbx-agent, PID 1 of every sandbox, and its client.
//
// The server side (Server) reaps zombies, forwards signals, runs the main
// command with its output kept as the sandbox log, and serves process and
// filesystem RPCs (api/sbx/agent/v1) over a Unix socket with sbx's own
// framing (internal/agentwire; methods.go), so that the agent links
// neither net/http nor Connect: they were half of its start. The client
// side (Client) is what runtimes use; it implements sandbox.Agent and maps
// wire errors back to the sandbox error vocabulary.
//
// The state dir is writable by sandbox root, so everything the host does in
// it (DialState, ReadExitFile, ReadLogs; hostfs.go) resolves names beneath
// a descriptor of the dir with openat2 and no symlinks, checks the file type
// on the descriptor it then uses, never blocks, bounds what it reads, and
// trusts the socket only after SO_PEERCRED names the expected agent.
package agent

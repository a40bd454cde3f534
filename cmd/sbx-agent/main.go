// Command sbx-agent is PID 1 of every sbx sandbox: it reaps, forwards
// signals, runs the main command and serves the runtime over a Unix socket.
// The work is done by internal/agent; this file parses flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"syscall"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/usermap"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == usermap.MakerFlag {
		// sbx serve's user namespace helper, not a sandbox's PID 1.
		if err := usermap.Serve(3); err != nil {
			fmt.Fprintln(os.Stderr, "sbx-agent:", err)
			os.Exit(1)
		}
		return
	}
	var cfg agent.Config
	flag.StringVar(&cfg.StateDir, "state-dir", "/.sbx/state", "directory for the socket, the main command's log and its exit status")
	flag.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", agent.DefaultLogMaxBytes, "size at which the main command's log is rotated (at most twice this is kept)")
	flag.Int64Var(&cfg.MaxFileBytes, "max-file-bytes", 0, "largest file a write may create; 0 is no limit")
	connFD := flag.Int(agent.ConnFlag, -1, "descriptor of a connection the host made before the start, served first (see internal/agent/start.go); -1 for none")
	workloadFD := flag.Int(agent.WorkloadFlag, -1, "descriptor of the tasks file of the cgroup whose pids limit the sandbox's processes have (see internal/agent/workload.go); -1 for none")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sbx-agent: unexpected arguments %q; the main command comes through Init\n", flag.Args())
		os.Exit(2)
	}
	var err error
	if *connFD >= 0 {
		cfg.Conn, err = agent.ConnFromFD(*connFD)
	}
	if err == nil && *workloadFD >= 0 {
		// Inherited without close-on-exec: no sandbox process gets it.
		syscall.CloseOnExec(*workloadFD)
		cfg.WorkloadTasks = os.NewFile(uintptr(*workloadFD), "workload tasks")
	}
	var s *agent.Server
	if err == nil {
		s, err = agent.New(cfg)
	}
	if err == nil {
		err = s.Run(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sbx-agent:", err)
		if errors.Is(err, agent.ErrDeadline) {
			os.Exit(agent.ExitDeadline)
		}
		os.Exit(1)
	}
}

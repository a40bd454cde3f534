package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newPortForwardCmd) }

// maxForwardConns bounds the connections one port-forward carries at once;
// further ones are closed at accept.
const maxForwardConns = 1024

func newPortForwardCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "port-forward SANDBOX [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT",
		Short: "Forward a local TCP port to a port of a sandbox",
		Long: `Listen on LOCAL_ADDR:LOCAL_PORT (default address 127.0.0.1) and carry each
accepted connection to REMOTE_PORT inside the sandbox, through the server
(one upgraded HTTP connection per TCP connection; the API key is always
needed, the port need not be published). LOCAL_PORT 0 picks a free port.
It prints where it listens and runs until interrupted (Ctrl-C).`,
		Example: `  sbx port-forward sb-123 5432:5432
  sbx port-forward sb-123 0.0.0.0:8080:80
  sbx port-forward sb-123 0:8080`,
		Args: exactArgs(2, "a sandbox id and [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			local, remote, err := parseForward(args[1])
			if err != nil {
				return err
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			return portForward(cmd, client.FromID(args[0]), local, remote)
		},
	}
}

// parseForward splits "[ADDR:]LOCAL:REMOTE" (ADDR may be "[::1]").
func parseForward(v string) (local string, remote int, err error) {
	bad := func(what string) error {
		return usageErrorf("%q: %s: want [LOCAL_ADDR:]LOCAL_PORT:REMOTE_PORT, e.g. 8080:80 or 0.0.0.0:8080:80", v, what)
	}
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return "", 0, bad("no REMOTE_PORT")
	}
	rest, r := v[:i], v[i+1:]
	if remote, err = parsePortNumber("REMOTE_PORT", r); err != nil {
		return "", 0, bad("REMOTE_PORT " + r + " is not from 1 to 65535")
	}
	addr, lport := "127.0.0.1", rest
	if j := strings.LastIndexByte(rest, ':'); j >= 0 {
		addr, lport = strings.TrimSuffix(strings.TrimPrefix(rest[:j], "["), "]"), rest[j+1:]
		if addr == "" || strings.ContainsAny(addr, "[]") {
			return "", 0, bad("LOCAL_ADDR is empty or malformed")
		}
	}
	if lport != "0" {
		if _, err := parsePortNumber("LOCAL_PORT", lport); err != nil {
			return "", 0, bad("LOCAL_PORT " + lport + " is not from 0 to 65535")
		}
	}
	return net.JoinHostPort(addr, lport), remote, nil
}

func portForward(cmd *cobra.Command, sb *sbx.Sandbox, local string, remote int) error {
	ctx := cmd.Context()
	// Fail early on an unknown or ended sandbox, before listening.
	if err := sb.Wait(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", local)
	if err != nil {
		return fmt.Errorf("listening on %s: %w: pick another LOCAL_PORT, or 0 for a free one", local, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Forwarding %s -> %s:%d (Ctrl-C to stop)\n", ln.Addr(), sb.ID(), remote)

	var (
		mu    sync.Mutex
		open  = map[net.Conn]bool{}
		wg    sync.WaitGroup
		slots = make(chan struct{}, maxForwardConns)
	)
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			open[c] = true
		} else {
			delete(open, c)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
	})
	defer stop()
	stderr := cmd.ErrOrStderr()
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = err
			}
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			fmt.Fprintf(stderr, "sbx: port-forward: %d connections open, closing the one from %s\n", maxForwardConns, c.RemoteAddr())
			c.Close()
			continue
		}
		track(c, true)
		wg.Add(1)
		go func() {
			defer func() { <-slots; track(c, false); c.Close(); wg.Done() }()
			up, err := sb.DialPort(ctx, remote)
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(stderr, "sbx: port-forward: connection from %s: %s\n", c.RemoteAddr(), oneLine(describe(err)))
				}
				return
			}
			track(up, true)
			defer func() { track(up, false); up.Close() }()
			pipe(c, up)
		}()
	}
	ln.Close()
	wg.Wait()
	if acceptErr != nil {
		return fmt.Errorf("port-forward on %s: %w", local, acceptErr)
	}
	// Ctrl-C is how a port-forward ends: not an error.
	return nil
}

// pipe copies both ways until both directions are done, passing EOF on as
// a half-close so request/response protocols finish cleanly.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		if _, err := io.Copy(dst, src); err != nil {
			// A reset or a closed side: nothing more can flow either way.
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

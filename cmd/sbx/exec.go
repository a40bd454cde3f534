package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newExecCmd) }

type execFlags struct {
	interactive, tty bool
	env              []string
	workdir, user    string
}

func newExecCmd() *cobra.Command {
	var f execFlags
	c := &cobra.Command{
		Use:   "exec [flags] SANDBOX COMMAND [ARG...]",
		Short: "Run a command in a running sandbox",
		Long: `Run a command in a running sandbox and exit with its exit code.

-i forwards this shell's stdin; -t runs the command on a terminal (use
-it for an interactive shell).`,
		Example: `  sbx exec sb-123 ls -l /
  sbx exec sb-123 -- sh -c 'echo $HOME'
  sbx exec -it sb-123 bash
  echo hi | sbx exec -i sb-123 cat`,
		Args: minArgs(2, "a sandbox id and a command"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, argv := args[0], args[1:]
			// Flag parsing stops at the sandbox id (SetInterspersed below),
			// so in `sbx exec ID -- cmd` the "--" reaches us as an argument;
			// it only separates, as in `sbx exec -- ID cmd`.
			if cmd.ArgsLenAtDash() < 0 && len(argv) > 0 && argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return usageErrorf("no command given after the sandbox id")
			}
			return runExec(cmd, f, id, argv)
		},
	}
	fl := c.Flags()
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "forward stdin to the command")
	fl.BoolVarP(&f.tty, "tty", "t", false, "run the command on a terminal")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable NAME=VALUE (repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory of the command")
	fl.StringVarP(&f.user, "user", "u", "", "user to run as (uid, uid:gid or name)")
	fl.SetInterspersed(false) // flags after the command belong to it
	return c
}

func runExec(cmd *cobra.Command, f execFlags, id string, argv []string) error {
	var opts []sbx.ExecOption
	env, err := parseEnv(f.env)
	if err != nil {
		return err
	}
	if env != nil {
		opts = append(opts, sbx.Env(env))
	}
	if f.workdir != "" {
		opts = append(opts, sbx.WorkingDir(f.workdir))
	}
	if f.user != "" {
		opts = append(opts, sbx.User(f.user))
	}
	if f.interactive {
		opts = append(opts, sbx.Stdin())
	}
	stdin := cmd.InOrStdin()
	stdinFile, _ := stdin.(*os.File)
	stdoutFile, _ := cmd.OutOrStdout().(*os.File)
	if f.tty {
		if stdinFile == nil || !term.IsTerminal(int(stdinFile.Fd())) {
			return usageErrorf("-t needs this shell's stdin to be a terminal; drop -t when piping input")
		}
		rows, cols := termSize(stdoutFile, stdinFile)
		opts = append(opts, sbx.TTY(rows, cols))
	}
	client, err := newClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	p, err := client.FromID(id).Exec(ctx, argv, opts...)
	if err != nil {
		return err
	}
	if f.tty {
		// Raw mode: keystrokes (including ^C) go to the remote terminal,
		// which does its own echo and line editing.
		old, err := term.MakeRaw(int(stdinFile.Fd()))
		if err != nil {
			return err
		}
		defer term.Restore(int(stdinFile.Fd()), old)
		stopResize := forwardResize(ctx, p, stdoutFile, stdinFile)
		defer stopResize()
	}
	var out sync.WaitGroup
	out.Add(2)
	go func() { defer out.Done(); io.Copy(cmd.OutOrStdout(), p.Stdout) }()
	go func() { defer out.Done(); io.Copy(cmd.ErrOrStderr(), p.Stderr) }()
	if f.interactive || f.tty {
		// This goroutine may stay blocked on a read of our stdin after the
		// process exits; the CLI exits then anyway.
		go func() {
			io.Copy(p.Stdin, stdin)
			p.Stdin.Close()
		}()
	}
	code, err := p.Wait()
	out.Wait()
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

// termSize returns the window size of the first terminal among files, or
// 24x80.
func termSize(files ...*os.File) (rows, cols uint16) {
	for _, f := range files {
		if f == nil {
			continue
		}
		if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
			return uint16(min(h, 0xffff)), uint16(min(w, 0xffff))
		}
	}
	return 24, 80
}

// forwardResize sends the terminal's new size to the process on every
// SIGWINCH until the returned stop function is called.
func forwardResize(ctx context.Context, p *sbx.Process, files ...*os.File) (stop func()) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				rows, cols := termSize(files...)
				p.Resize(ctx, rows, cols)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
	}
}

// Command sbx is the command line of sbx: it starts the server (`sbx serve`)
// and drives sandboxes through the Go SDK (`sbx run`, `exec`, `ls`, `cp`, ...).
//
// Every client subcommand lives in its own file and uses only the Go SDK
// (package github.com/sbx-run/sbx); depcheck_test.go fails if a file other
// than serve.go (or serve_*.go) imports internal/... or gen/....
//
// Adding a subcommand from another file (this is how serve.go plugs in):
//
//	func init() { commands = append(commands, newServeCmd) }
//	func newServeCmd() *cobra.Command { return &cobra.Command{Use: "serve", RunE: ...} }
//
// A RunE error is printed as one line "sbx: <error>" and exits 1; return
// usageErrorf(...) for a usage error (exit 2) or exitCode(n) to exit n
// silently. The command's context (cmd.Context()) is cancelled on SIGINT or
// SIGTERM.
//
// Exit codes: a command run by `sbx run` or `sbx exec` passes its exit code
// through (127 when it does not exist, as in a shell); 1 is an sbx error
// (with a one-line message naming the cause and what to do); 2 is a usage
// error; 130 is an interrupt.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

// commands are the subcommand constructors; each file appends its own in an
// init function.
var commands []func() *cobra.Command

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globals are the root's persistent flags.
type globals struct {
	url, caFile string
}

var global globals

// newRoot builds the command tree; tests build a fresh one per run.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "sbx",
		Short:         "Run and use sandboxes on an sbx server",
		Long:          "sbx runs commands in isolated sandboxes started from OCI images.\n\nThe client commands talk to the server at $SBX_URL (default " + sbx.DefaultURL + ")\nwith the key in $SBX_API_KEY or in " + sbx.DefaultCredentialsPath() + ".",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&global.url, "url", "", "server URL (default $SBX_URL, then the credentials file, then "+sbx.DefaultURL+")")
	root.PersistentFlags().StringVar(&global.caFile, "ca-file", "", "PEM file of the CAs to trust for an https:// server (default $"+sbx.EnvCAFile+", then the system's)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
	for _, newCmd := range commands {
		c := newCmd()
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
		root.AddCommand(c)
	}
	return root
}

// execute runs the CLI with args and returns the process exit code.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	global = globals{}
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "sbx: %s\nRun 'sbx --help' for usage.\n", oneLine(err.Error()))
		return 2
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		fmt.Fprintln(stderr, "sbx: interrupted")
		return 130
	}
	fmt.Fprintf(stderr, "sbx: %s\n", oneLine(describe(err)))
	if sbx.ReasonOf(err) == "COMMAND_NOT_FOUND" {
		return 127 // as a shell does, so scripts can tell it from a failure
	}
	return 1
}

// exitCode ends the CLI with that code and no message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// usageError is a wrong invocation: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// isCobraUsage recognises the errors cobra itself returns for unknown
// commands and wrong argument counts.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// describe adds what to do for errors whose server message cannot know it.
func describe(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, sbx.ErrUnauthenticated):
		msg += ": set SBX_API_KEY, or check the key in " + sbx.DefaultCredentialsPath()
	case errors.Is(err, sbx.ErrResourceExhausted):
		if d := sbx.RetryAfterOf(err); d > 0 {
			msg += fmt.Sprintf(": try again in %s", d)
		}
	}
	return msg
}

// oneLine joins a multi-line message into one line, so that scripts can
// rely on one line per error.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// newClient returns an SDK client from --url, the environment and the
// credentials file.
func newClient() (*sbx.Client, error) {
	var opts []sbx.ClientOption
	if global.url != "" {
		opts = append(opts, sbx.WithURL(global.url))
	}
	if global.caFile != "" {
		opts = append(opts, sbx.WithCAFile(global.caFile))
	}
	return sbx.NewClient(opts...)
}

// exactArgs and minArgs are cobra's validators with usage errors (exit 2)
// and messages that say what is expected.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("expected %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("expected %s", what)
		}
		return nil
	}
}

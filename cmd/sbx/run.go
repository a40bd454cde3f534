package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newRunCmd) }

type runFlags struct {
	image, workdir, lifetime, memory, cpus string
	disk                                   string
	env, tags, ports                       []string
	pids                                   int64
	detach, rm                             bool
	net                                    netFlags
	secrets                                []string
}

func newRunCmd() *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run [flags] [-- COMMAND [ARG...]]",
		Short: "Start a sandbox, optionally running a command in it",
		Long: `Start a sandbox from an image.

With a command and without -d, sbx streams the command's output and exits
with its exit code. With -d it prints the sandbox id and returns at once; a
sandbox without a command idles until it is stopped (sbx stop) or its
lifetime ends.`,
		Example: `  sbx run --image python:3.11 -- python -c 'print(1+1)'
  sbx run -d --image python:3.11 --lifetime 1h
  sbx run -d -p 8080 -p 9000:public -- python -m http.server 8080
  sbx run --rm -e MODE=test --memory 1g -- sh -c 'echo $MODE'`,
		RunE: func(cmd *cobra.Command, args []string) error { return runRun(cmd, f, args) },
	}
	fl := c.Flags()
	fl.StringVar(&f.image, "image", "", "image reference (default: the server's, python:3.11)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable NAME=VALUE (repeatable; NAME alone copies it from this shell)")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag for filtering with sbx ls (repeatable)")
	fl.StringVar(&f.lifetime, "lifetime", "", "stop the sandbox after this long (e.g. 30m; default: the server's, 10m)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory of the command and of later execs")
	fl.StringVar(&f.memory, "memory", "", "memory limit (e.g. 512m, 2g)")
	fl.StringVar(&f.cpus, "cpus", "", "CPU limit in cores (e.g. 0.5, 2)")
	fl.StringVar(&f.disk, "disk", "", "size limit of the sandbox's writable filesystem (e.g. 512m, 10g; default: the server's)")
	fl.Int64Var(&f.pids, "pids", 0, "maximum number of processes")
	fl.BoolVarP(&f.detach, "detach", "d", false, "print the sandbox id and return without waiting")
	fl.BoolVar(&f.rm, "rm", false, "delete the sandbox when its command has exited")
	fl.StringArrayVarP(&f.ports, "port", "p", nil, "publish a port through the server: PORT or PORT:public (repeatable; see sbx port)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "inject a stored secret (sbx secret set) as an env var: NAME or NAME=ENV_VAR (repeatable)")
	f.net.add(fl)
	fl.SetInterspersed(false) // flags after the image's command belong to it
	return c
}

func runOptions(f runFlags, argv []string) ([]sbx.RunOption, error) {
	var opts []sbx.RunOption
	if f.image != "" {
		opts = append(opts, sbx.Image(f.image))
	}
	if len(argv) > 0 {
		opts = append(opts, sbx.Command(argv...))
	}
	env, err := parseEnv(f.env)
	if err != nil {
		return nil, err
	}
	if env != nil {
		opts = append(opts, sbx.Env(env))
	}
	if len(f.tags) > maxTags {
		return nil, usageErrorf("too many --tag values (%d): at most %d", len(f.tags), maxTags)
	}
	if len(f.tags) > 0 {
		opts = append(opts, sbx.Tags(f.tags...))
	}
	if f.workdir != "" {
		opts = append(opts, sbx.WorkingDir(f.workdir))
	}
	if f.lifetime != "" {
		d, err := parseDuration("lifetime", f.lifetime)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sbx.Lifetime(d))
	}
	var res sbx.Resources
	if f.memory != "" {
		if res.MemoryBytes, err = parseBytes(f.memory); err != nil {
			return nil, err
		}
	}
	if f.disk != "" {
		if res.DiskBytes, err = parseBytes(f.disk); err != nil {
			return nil, usageErrorf("disk %q: want a positive size such as 512m or 10g", f.disk)
		}
	}
	if f.cpus != "" {
		if res.CPUMillis, err = parseCPUs(f.cpus); err != nil {
			return nil, err
		}
	}
	if f.pids < 0 {
		return nil, usageErrorf("--pids %d: want a positive number", f.pids)
	}
	res.Pids = f.pids
	if res != (sbx.Resources{}) {
		opts = append(opts, res)
	}
	ports, err := parsePortFlags(f.ports)
	if err != nil {
		return nil, err
	}
	opts = append(opts, ports...)
	secrets, err := parseSecretFlags(f.secrets)
	if err != nil {
		return nil, err
	}
	if len(secrets) > 0 {
		opts = append(opts, sbx.Secrets(secrets...))
	}
	if o, err := f.net.option(); err != nil {
		return nil, err
	} else if o != nil {
		opts = append(opts, o)
	}
	return opts, nil
}

func runRun(cmd *cobra.Command, f runFlags, args []string) error {
	if f.detach && f.rm {
		return usageErrorf("--rm needs sbx to wait for the command, so it cannot be combined with -d")
	}
	if !f.detach && len(args) == 0 {
		return usageErrorf("give a command after -- (sbx run -- CMD ARGS), or use -d to start an idle sandbox")
	}
	// `sbx run IMAGE -- CMD`, as docker has it: say where the image goes
	// rather than run the image's name as the command. (Flag parsing stops
	// at the first argument, so a later -- is still among args.)
	if i := slices.Index(args, "--"); cmd.ArgsLenAtDash() < 0 && i > 0 {
		return usageErrorf("%q before --: the image goes in --image (sbx run --image %s -- %s), the command after --",
			strings.Join(args[:i], " "), args[0], strings.Join(args[i+1:], " "))
	}
	opts, err := runOptions(f, args)
	if err != nil {
		return err
	}
	client, err := newClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	sb, err := client.Run(ctx, opts...)
	if err != nil {
		return err
	}
	if f.detach {
		fmt.Fprintln(cmd.OutOrStdout(), sb.ID())
	}
	// URLs go to stderr: stdout stays the id alone (-d) or the command's
	// output, for scripts.
	for _, p := range sb.Ports() {
		fmt.Fprintf(cmd.ErrOrStderr(), "port %d (%s): %s\n", p.Port, visibility(p.Public), p.URL)
	}
	if f.detach {
		return nil
	}
	code, err := attachMain(ctx, cmd, sb)
	if ctx.Err() != nil {
		// Interrupted: stop the sandbox rather than leave it running
		// unattended, then report the interrupt.
		cleanup, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sb.Stop(cleanup, sbx.Grace(2*time.Second))
		if f.rm {
			sb.Delete(cleanup)
		}
		return ctx.Err()
	}
	if f.rm {
		cleanup, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if derr := sb.Delete(cleanup); derr != nil && err == nil {
			err = fmt.Errorf("removing sandbox %s: %w", sb.ID(), derr)
		}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

// attachMain streams the main command's output until it exits and returns
// its exit code.
func attachMain(ctx context.Context, cmd *cobra.Command, sb *sbx.Sandbox) (int, error) {
	// Logs waits until the sandbox has started (or ended: a command that
	// ran and ended before we looked still has its output in the log).
	if err := sb.Wait(ctx); err != nil && sb.Info().StartedAt.IsZero() {
		return 0, err
	}
	if err := sb.Logs(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), sbx.LogOptions{Follow: true}); err != nil {
		return 0, err
	}
	info, err := sb.WaitUntilComplete(ctx)
	if err != nil {
		return 0, err
	}
	if !info.Exited {
		return 0, fmt.Errorf("sandbox %s ended %s (%s) before its command exited", info.ID, info.State, info.Reason)
	}
	return info.ExitCode, nil
}

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newSecretCmd) }

// Bounds the CLI checks before asking the server (which checks them too).
const (
	maxSecretBytes = 64 << 10
	maxSecretFlags = 100
)

// newSecretCmd is `sbx secret`: the tenant's secret store, whose secrets
// sandboxes get as env vars (sbx run --secret NAME[=ENV_VAR]).
func newSecretCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "secret",
		Short: "Manage the tenant's secrets (set, ls, rm), injected with sbx run --secret",
		Long: `Manage your tenant's secrets: named values (API keys, tokens) that the server stores
encrypted and injects into sandboxes as environment variables when they are created
with --secret NAME[=ENV_VAR]. Values are write-only: no command prints them.`,
		Args: exactArgs(0, "a subcommand: set, ls or rm"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range []func() *cobra.Command{newSecretSetCmd, newSecretLsCmd, newSecretRmCmd} {
		s := sub()
		s.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
		c.AddCommand(s)
	}
	return c
}

func newSecretSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME",
		Short: "Store a secret, its value read from stdin (never from the command line)",
		Long: `set stores NAME with the value read from stdin, replacing any earlier value. From a
terminal it asks for the value without echoing it; otherwise it reads stdin to its end and
drops one trailing newline. The value never goes on the command line, where other users
and the shell history would see it. At most 64 KiB.`,
		Example: `  sbx secret set HF_TOKEN             # asks for the value
  printf %s "$TOKEN" | sbx secret set HF_TOKEN
  sbx secret set OPENAI_API_KEY < key.txt`,
		Args: exactArgs(1, "the secret's NAME (its value comes from stdin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := readSecretValue(cmd, args[0])
			if err != nil {
				return err
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			_, created, err := client.SetSecret(cmd.Context(), args[0], value)
			if err != nil {
				return err
			}
			verb := "updated"
			if created {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s secret %s\n", verb, args[0])
			return nil
		},
	}
}

// readSecretValue reads a value from stdin: without echo from a terminal,
// else all of it (bounded) less one trailing newline.
func readSecretValue(cmd *cobra.Command, name string) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Value of %s: ", name)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the value from the terminal: %w", err)
		}
		return string(b), nil
	}
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(in), maxSecretBytes+3))
	if err != nil {
		return "", fmt.Errorf("read the value from stdin: %w", err)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if len(v) > maxSecretBytes {
		return "", usageErrorf("the value on stdin is over %d bytes (64 KiB), the most a secret may hold", maxSecretBytes)
	}
	return v, nil
}

// secretJSON is the JSON shape of a secret in `sbx secret ls --json`.
type secretJSON struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func newSecretLsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the tenant's secrets: names and when they were set, never values",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			list, err := client.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				views := make([]secretJSON, 0, len(list))
				for _, s := range list {
					views = append(views, secretJSON{Name: s.Name, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt})
				}
				return writeJSON(out, views)
			}
			if len(list) == 0 {
				fmt.Fprintln(out, "no secrets: store one with `sbx secret set NAME`")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tUPDATED")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.CreatedAt.Local().Format(time.DateTime), s.UpdatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newSecretRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"delete"},
		Short:   "Delete secrets (running sandboxes keep the values they got)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := client.DeleteSecret(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted secret %s\n", name)
			}
			return nil
		},
	}
}

// secretRefJSON is a sandbox's injected secret in `sbx inspect` (names
// only: the API never returns values).
type secretRefJSON struct {
	Name   string `json:"name"`
	EnvVar string `json:"env_var"`
}

func toSecretRefsJSON(refs []sbx.Secret) []secretRefJSON {
	var out []secretRefJSON
	for _, r := range refs {
		v := r.EnvVar
		if v == "" {
			v = r.Name
		}
		out = append(out, secretRefJSON{Name: r.Name, EnvVar: v})
	}
	return out
}

// parseSecretFlags turns `--secret NAME[=ENV_VAR]` values into Secrets.
func parseSecretFlags(vals []string) ([]sbx.Secret, error) {
	if len(vals) > maxSecretFlags {
		return nil, usageErrorf("too many --secret values (%d): at most %d", len(vals), maxSecretFlags)
	}
	var out []sbx.Secret
	for _, v := range vals {
		name, envVar, hasVar := strings.Cut(v, "=")
		if name == "" || (hasVar && envVar == "") {
			return nil, usageErrorf("--secret %q: want NAME or NAME=ENV_VAR (the secret's name, not its value)", v)
		}
		out = append(out, sbx.Secret{Name: name, EnvVar: envVar})
	}
	return out, nil
}

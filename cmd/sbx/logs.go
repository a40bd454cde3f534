package main

import (
	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newLogsCmd) }

func newLogsCmd() *cobra.Command {
	var (
		follow bool
		tail   int
	)
	c := &cobra.Command{
		Use:   "logs [flags] SANDBOX",
		Short: "Print a sandbox's main-command output",
		Example: `  sbx logs sb-123
  sbx logs -f --tail 20 sb-123`,
		Args: exactArgs(1, "one sandbox id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usageErrorf("--tail %d: want 0 (everything kept) or more lines", tail)
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			return client.FromID(args[0]).Logs(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(),
				sbx.LogOptions{Follow: follow, Tail: tail})
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the command exits")
	c.Flags().IntVarP(&tail, "tail", "n", 0, "start with the last N lines (0: everything kept)")
	return c
}

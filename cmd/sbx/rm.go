package main

import (
	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newRmCmd) }

func newRmCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm [flags] SANDBOX...",
		Short: "Delete sandboxes and their records",
		Long:  "Delete ended sandboxes and their records. A sandbox that still runs is refused unless -f, which stops it first.",
		Example: `  sbx rm sb-123
  sbx rm -f $(sbx ls -q --tag scratch)`,
		Args: minArgs(1, "at least one sandbox id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return forEach(cmd, args, func(id string) error {
				if !force {
					sb, err := client.Get(ctx, id)
					if err != nil {
						return err
					}
					if st := sb.Info().State; !st.Terminal() {
						return &sbx.Error{Kind: sbx.ErrFailedPrecondition, Reason: "SANDBOX_RUNNING",
							Message: "sandbox " + id + " is " + string(st) + ": stop it first (sbx stop " + id + ") or use sbx rm -f"}
					}
				}
				return client.Delete(ctx, id)
			})
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "stop running sandboxes before deleting them")
	return c
}

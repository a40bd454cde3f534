package main

import (
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newInspectCmd) }

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "inspect SANDBOX...",
		Short:   "Show everything the server knows about sandboxes, as JSON",
		Example: "  sbx inspect sb-123",
		Args:    minArgs(1, "at least one sandbox id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			views := make([]sandboxJSON, 0, len(args))
			for _, id := range args {
				sb, err := client.Get(cmd.Context(), id)
				if err != nil {
					return err
				}
				views = append(views, toJSON(sb.Info()))
			}
			return writeJSON(cmd.OutOrStdout(), views)
		},
	}
}

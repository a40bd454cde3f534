package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newStopCmd) }

func newStopCmd() *cobra.Command {
	var grace string
	c := &cobra.Command{
		Use:   "stop [flags] SANDBOX...",
		Short: "Stop sandboxes (SIGTERM, then SIGKILL after the grace period)",
		Example: `  sbx stop sb-123
  sbx stop --grace 30s sb-123 sb-456`,
		Args: minArgs(1, "at least one sandbox id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []sbx.StopOption
			if grace != "" {
				d, err := parseDuration("grace", grace)
				if err != nil {
					return err
				}
				opts = append(opts, sbx.Grace(d))
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			return forEach(cmd, args, func(id string) error { return client.Stop(cmd.Context(), id, opts...) })
		},
	}
	c.Flags().StringVar(&grace, "grace", "", "time between SIGTERM and SIGKILL (default: the server's, 10s)")
	return c
}

// forEach runs fn for every id, printing each id that succeeded (as docker
// does) and going on after failures; it returns the first error, naming how
// many failed.
func forEach(cmd *cobra.Command, ids []string, fn func(string) error) error {
	var errs []error
	for _, id := range ids {
		if err := fn(id); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), id)
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return fmt.Errorf("%d of %d failed; first: %w", len(errs), len(ids), errs[0])
}

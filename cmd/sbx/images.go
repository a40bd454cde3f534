package main

import (
	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newImagesCmd) }

// The public API has no image service yet, so these subcommands exist (for
// scripts and --help) but say so instead of doing anything.
func newImagesCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "images",
		Short: "Manage the server's image cache (pull, ls, rm, import)",
		Args:  exactArgs(0, "a subcommand: pull, ls, rm or import"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range []struct{ use, short string }{
		{"pull IMAGE", "Pull an image into the server's cache, with progress"},
		{"ls", "List cached images"},
		{"rm IMAGE...", "Remove cached images"},
		{"import FILE", "Import an OCI layout directory or a docker-save/OCI tarball"},
	} {
		c.AddCommand(&cobra.Command{
			Use:   sub.use,
			Short: sub.short,
			RunE:  func(*cobra.Command, []string) error { return errImagesUnavailable },
		})
	}
	return c
}

var errImagesUnavailable = &sbx.Error{
	Kind: sbx.ErrFailedPrecondition, Reason: "NOT_AVAILABLE",
	Message: "image management is not available through the API yet; `sbx run --image REF` pulls an image on first use",
}

package main

import (
	"github.com/spf13/cobra"
)

func newImagesRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm IMAGE...",
		Aliases: []string{"remove"},
		Short:   "Remove images from the server's cache",
		Long: `Remove images from the server's cache. An image that sandboxes use is refused
(IMAGE_IN_USE) until they are gone. A "sha256:..." digest removes every
reference to that image. Needs an image admin's key.`,
		Example: `  sbx images rm busybox
  sbx images rm sha256:4f1c...`,
		Args: minArgs(1, "at least one image reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			return forEach(cmd, args, func(ref string) error { return client.RemoveImage(cmd.Context(), ref) })
		},
	}
}

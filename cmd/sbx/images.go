package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newImagesCmd) }

// newImagesCmd is `sbx images`: the server's image cache, which all of its
// tenants share. Pull and ls work for every tenant; rm and import need an
// image admin's key (the local-mode key is one).
func newImagesCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "images",
		Short: "Manage the server's image cache (pull, ls, rm, import)",
		Long: `Manage the server's image cache, which all of the server's tenants share.

Any API key may pull and list images; rm and import change what every tenant
sees, so they need an image admin's key (the key that local mode creates is
one).`,
		Args: exactArgs(0, "a subcommand: pull, ls, rm or import"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range []func() *cobra.Command{newImagesPullCmd, newImagesLsCmd, newImagesRmCmd, newImagesImportCmd} {
		s := sub()
		s.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
		c.AddCommand(s)
	}
	return c
}

// humanSize writes n bytes the way docker does: 1.5MB is 1.5 MiB here,
// labelled honestly.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// shortDigest is the first 12 hex digits of "sha256:<hex>".
func shortDigest(d string) string {
	const prefix = "sha256:"
	if len(d) >= len(prefix)+12 && d[:len(prefix)] == prefix {
		return d[len(prefix) : len(prefix)+12]
	}
	return d
}

package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

// imageJSON is the JSON shape of an image in `sbx images ls --json`.
type imageJSON struct {
	Ref     string     `json:"ref"`
	Digest  string     `json:"digest"`
	Size    int64      `json:"size"`
	Layers  int        `json:"layers"`
	Created *time.Time `json:"created,omitempty"`
}

func newImagesLsCmd() *cobra.Command {
	var asJSON, quiet bool
	c := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List the images in the server's cache",
		Example: `  sbx images ls
  sbx images ls --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			list, err := client.ListImages(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				views := make([]imageJSON, 0, len(list))
				for _, img := range list {
					views = append(views, toImageJSON(img))
				}
				return writeJSON(out, views)
			case quiet:
				for _, img := range list {
					fmt.Fprintln(out, img.Ref)
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REF\tDIGEST\tSIZE\tLAYERS\tCREATED")
			now := time.Now()
			for _, img := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", img.Ref, shortDigest(img.Digest), humanSize(img.Size), img.Layers, ago(now, img.Created))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print references only")
	return c
}

func toImageJSON(img sbx.ImageInfo) imageJSON {
	return imageJSON{Ref: img.Ref, Digest: img.Digest, Size: img.Size, Layers: img.Layers, Created: optTime(img.Created)}
}

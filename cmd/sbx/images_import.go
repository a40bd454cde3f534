package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func newImagesImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Import an image tarball (docker save, or an OCI archive) into the server's cache",
		Long: `Import the images of a tarball into the server's cache, for servers without
registry access: an OCI archive (an OCI image layout in a tar, which is what
docker save writes since Docker 25) or a legacy docker-save tar. "-" reads the
tarball from stdin. Needs an image admin's key.`,
		Example: `  docker save busybox:latest -o busybox.tar && sbx images import busybox.tar
  docker save busybox:latest | sbx images import -`,
		Args: exactArgs(1, "one tarball (or - for stdin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return &sbx.Error{Kind: sbx.ErrInvalidArgument, Reason: "INVALID_ARGUMENT",
						Message: fmt.Sprintf("cannot read %s: %v", args[0], err), Err: err}
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil && st.IsDir() {
					return usageErrorf("%s is a directory: tar an OCI layout first (tar -C %s -cf layout.tar .)", args[0], args[0])
				}
				in = f
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			imgs, err := client.ImportImage(cmd.Context(), in)
			if err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%s, %s)\n", img.Ref, shortDigest(img.Digest), humanSize(img.Size))
			}
			return nil
		},
	}
}

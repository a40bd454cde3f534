package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newPortCmd) }

func newPortCmd() *cobra.Command {
	var (
		public, asJSON bool
		rm             []string
	)
	c := &cobra.Command{
		Use:   "port [flags] SANDBOX [PORT[:public]]",
		Short: "List, publish or unpublish a sandbox's ports",
		Long: `Without PORT, list the sandbox's published ports and their URLs.

With PORT, publish it through the server's proxy (or change its visibility)
and print its URLs. A private port (the default) needs the API key: send
"Authorization: Bearer $SBX_API_KEY", or use the key as the password of HTTP
basic auth. A public port (--public, or PORT:public) needs no key; its URL
holds an unguessable token.

--rm PORT stops publishing a port; open connections to it are closed.`,
		Example: `  sbx port sb-123
  sbx port sb-123 8080
  sbx port sb-123 3000 --public
  sbx port sb-123 --rm 8080`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErrorf("expected a sandbox id and optionally a port, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			if len(rm) > 0 && (len(args) == 2 || public) {
				return usageErrorf("--rm cannot be combined with a port to publish or --public")
			}
			var unpublish []int
			for _, v := range rm {
				p, err := parsePortNumber("--rm", v)
				if err != nil {
					return err
				}
				unpublish = append(unpublish, p)
			}
			var spec sbx.Port
			if len(args) == 2 {
				var err error
				if spec, err = parsePortSpec("PORT", args[1]); err != nil {
					return err
				}
				spec.Public = spec.Public || public
			} else if public {
				return usageErrorf("--public needs a PORT to publish, e.g. sbx port %s 8080 --public", id)
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			sb := client.FromID(id)
			switch {
			case len(unpublish) > 0:
				for _, p := range unpublish {
					if err := sb.UnexposePort(ctx, p); err != nil {
						return err
					}
				}
				return nil
			case len(args) == 2:
				p, err := sb.ExposePort(ctx, spec.Port, spec.Public)
				if err != nil {
					return err
				}
				return printPorts(out, []sbx.ExposedPort{p}, asJSON)
			}
			info, err := sb.Refresh(ctx)
			if err != nil {
				return err
			}
			return printPorts(out, info.Ports, asJSON)
		},
	}
	fl := c.Flags()
	fl.BoolVar(&public, "public", false, "publish without needing the API key, at an unguessable URL")
	fl.StringArrayVar(&rm, "rm", nil, "stop publishing this port (repeatable)")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// printPorts writes ports as a table (PORT, VISIBILITY, URL, PATH URL) or
// as JSON.
func printPorts(w io.Writer, ports []sbx.ExposedPort, asJSON bool) error {
	if asJSON {
		views := make([]portJSON, 0, len(ports))
		for _, p := range ports {
			views = append(views, toPortJSON(p))
		}
		return writeJSON(w, views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tVISIBILITY\tURL\tPATH URL")
	for _, p := range ports {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.Port, visibility(p.Public), p.URL, p.PathURL)
	}
	return tw.Flush()
}

func visibility(public bool) string {
	if public {
		return "public"
	}
	return "private"
}

// parsePortSpec parses "8080", "8080:public" or "8080:private".
func parsePortSpec(flag, v string) (sbx.Port, error) {
	num, vis, hasVis := strings.Cut(v, ":")
	p, err := parsePortNumber(flag, num)
	if err != nil {
		return sbx.Port{}, usageErrorf("%s %q: want PORT or PORT:public with PORT from 1 to 65535, e.g. 8080 or 8080:public", flag, v)
	}
	spec := sbx.Port{Port: p}
	if hasVis {
		switch strings.ToLower(vis) {
		case "public":
			spec.Public = true
		case "private":
		default:
			return sbx.Port{}, usageErrorf("%s %q: visibility %q: want public or private, e.g. 8080:public", flag, v, vis)
		}
	}
	return spec, nil
}

func parsePortNumber(flag, v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, usageErrorf("%s %q: want a TCP port from 1 to 65535", flag, v)
	}
	return p, nil
}

// parsePortFlags turns sbx run's -p values into Port options.
func parsePortFlags(vals []string) ([]sbx.RunOption, error) {
	const maxPorts = 32
	if len(vals) > maxPorts {
		return nil, usageErrorf("too many -p values (%d): at most %d", len(vals), maxPorts)
	}
	seen := map[int]bool{}
	var opts []sbx.RunOption
	for _, v := range vals {
		p, err := parsePortSpec("-p", v)
		if err != nil {
			return nil, err
		}
		if seen[p.Port] {
			return nil, usageErrorf("-p %q: port %d is given twice: give each port once", v, p.Port)
		}
		seen[p.Port] = true
		opts = append(opts, p)
	}
	return opts, nil
}

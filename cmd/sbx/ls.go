package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newLsCmd) }

func newLsCmd() *cobra.Command {
	var (
		tags, states       []string
		all, asJSON, quiet bool
		session            string
	)
	c := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list", "ps"},
		Short:   "List sandboxes",
		Long:    "List sandboxes that have not ended, newest first; --all adds ended ones (kept for the server's retention period).",
		Example: `  sbx ls
  sbx ls --tag eval --state RUNNING
  sbx ls -a --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := sbx.ListOptions{Tags: tags, All: all, SessionID: session}
			for _, s := range states {
				st := sbx.State(strings.ToUpper(s))
				if !validState(st) {
					return usageErrorf("--state %q: want one of %v", s, sbx.States)
				}
				opts.States = append(opts.States, st)
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			list, err := client.List(cmd.Context(), opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				views := make([]sandboxJSON, 0, len(list))
				for _, sb := range list {
					views = append(views, toJSON(sb.Info()))
				}
				return writeJSON(out, views)
			case quiet:
				for _, sb := range list {
					fmt.Fprintln(out, sb.ID())
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tIMAGE\tSTATE\tCREATED\tCOMMAND\tTAGS")
			now := time.Now()
			for _, sb := range list {
				i := sb.Info()
				state := string(i.State)
				if i.Exited {
					state += fmt.Sprintf(" (%d)", i.ExitCode)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.Image, state, ago(now, i.CreatedAt),
					shorten(strings.Join(i.Command, " "), 30), strings.Join(i.Tags, ","))
			}
			return tw.Flush()
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&tags, "tag", nil, "only sandboxes with this tag (repeatable; all must match)")
	fl.StringArrayVar(&states, "state", nil, "only sandboxes in this state (repeatable)")
	fl.StringVar(&session, "session", "", "only this session's sandboxes")
	fl.BoolVarP(&all, "all", "a", false, "include ended sandboxes")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print ids only")
	return c
}

func validState(s sbx.State) bool {
	for _, v := range sbx.States {
		if s == v {
			return true
		}
	}
	return false
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newLogsCmd) }

func newLogsCmd() *cobra.Command {
	var (
		follow     bool
		tail       int
		since      string
		timestamps bool
	)
	c := &cobra.Command{
		Use:   "logs [flags] SANDBOX",
		Short: "Print a sandbox's main-command output",
		Example: `  sbx logs sb-123
  sbx logs -f --tail 20 sb-123
  sbx logs --since 10m --timestamps sb-123
  sbx logs --since 2026-11-27T03:00:00Z sb-123`,
		Args: exactArgs(1, "one sandbox id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usageErrorf("--tail %d: want 0 (everything kept) or more lines", tail)
			}
			opts := sbx.LogOptions{Follow: follow, Tail: tail, Timestamps: timestamps}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				opts.Since = t
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			return client.FromID(args[0]).Logs(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the command exits")
	c.Flags().IntVarP(&tail, "tail", "n", 0, "start with the last N lines (0: everything kept)")
	c.Flags().StringVar(&since, "since", "", "only lines written since a time: RFC 3339 (2026-11-27T03:00:00Z), Unix seconds, or a duration ago (10m, 1h30m)")
	c.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with the time it was written (RFC 3339, UTC)")
	return c
}

// parseSince reads --since like docker logs: a duration before now (10m),
// an RFC 3339 time, or Unix seconds (with an optional fraction).
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usageErrorf("--since %q: give a positive duration (10m) or a time", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1<<40 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, usageErrorf("--since %q: want an RFC 3339 time (2026-11-27T03:00:00Z), Unix seconds, or a duration ago (10m)", s)
}

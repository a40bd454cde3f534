package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newPoolsCmd) }

// poolJSON is the JSON shape of a pool in `sbx pools --json`.
type poolJSON struct {
	Key            string     `json:"key"`
	Image          string     `json:"image"`
	MinIdle        int        `json:"minIdle"`
	Max            int        `json:"max"`
	Target         int        `json:"target"`
	Idle           int        `json:"idle"`
	Warming        int        `json:"warming"`
	Hits           int64      `json:"hits"`
	Misses         int64      `json:"misses"`
	Refills        int64      `json:"refills"`
	RefillFailures int64      `json:"refillFailures"`
	LastRefillMS   float64    `json:"lastRefillMs"`
	MeanRefillMS   float64    `json:"meanRefillMs"`
	LastError      string     `json:"lastError,omitempty"`
	LastErrorTime  *time.Time `json:"lastErrorTime,omitempty"`
	RetryTime      *time.Time `json:"retryTime,omitempty"`
}

// newPoolsCmd is `sbx pools`: the server's warm pools with their sizes,
// hits, misses, refill times and last refill error.
func newPoolsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "pools [flags]",
		Short: "List the server's warm pools: sizes, hits, misses, refill times, errors",
		Long: "pools lists the warm pools the server keeps (configured with `sbx serve --pool IMAGE=MIN[:MAX]`\n" +
			"or `pools` in its config file): idle and warming sandboxes, hits and misses of creates that\n" +
			"matched each pool, refill times, and why refills fail, if they do.",
		Example: `  sbx pools
  sbx pools --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			list, err := client.ListPools(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				views := make([]poolJSON, 0, len(list))
				for _, p := range list {
					views = append(views, toPoolJSON(p))
				}
				return writeJSON(out, views)
			}
			if len(list) == 0 {
				fmt.Fprintln(out, "no warm pools are configured (sbx serve --pool IMAGE=MIN[:MAX])")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POOL\tIDLE\tWARMING\tTARGET\tMIN\tMAX\tHITS\tMISSES\tREFILL(MEAN)\tLAST ERROR")
			for _, p := range list {
				lastErr := "-"
				if p.LastError != "" {
					lastErr = truncateText(p.LastError, 100)
					if !p.RetryTime.IsZero() {
						lastErr += fmt.Sprintf(" (retry in %s)", time.Until(p.RetryTime).Round(time.Second))
					}
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Key, p.Idle, p.Warming, p.Target, p.MinIdle, p.Max,
					p.Hits, p.Misses, ms(p.MeanRefill), lastErr)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func toPoolJSON(p sbx.PoolInfo) poolJSON {
	return poolJSON{
		Key: p.Key, Image: p.Image, MinIdle: p.MinIdle, Max: p.Max, Target: p.Target, Idle: p.Idle, Warming: p.Warming,
		Hits: p.Hits, Misses: p.Misses, Refills: p.Refills, RefillFailures: p.RefillFailures,
		LastRefillMS: p.LastRefill.Seconds() * 1000, MeanRefillMS: p.MeanRefill.Seconds() * 1000,
		LastError: p.LastError, LastErrorTime: optTime(p.LastErrorTime), RetryTime: optTime(p.RetryTime),
	}
}

// ms renders a duration in milliseconds, "-" for none.
func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(d.Seconds()*1000, 'f', 1, 64) + "ms"
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

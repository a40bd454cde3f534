package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newStatsCmd) }

func newStatsCmd() *cobra.Command {
	var asJSON, watch bool
	c := &cobra.Command{
		Use:   "stats [flags] SANDBOX",
		Short: "Show what a running sandbox uses: CPU, memory, OOM kills, processes, disk",
		Long: `Show a running sandbox's resource usage and limits, read from its cgroups
and disk quota on the server's host. DISK lags writes by up to ~30 s (until
the filesystem commits; a sync in the sandbox commits at once). A process
killed with SIGKILL while OOM grew ran out of memory: raise --memory.`,
		Example: `  sbx stats sb-123
  sbx stats --watch sb-123
  sbx stats --json sb-123`,
		Args: exactArgs(1, "one sandbox id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON && watch {
				return usageErrorf("--json and --watch do not go together: poll with --json instead")
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			sb := client.FromID(args[0])
			out := cmd.OutOrStdout()
			st, err := sb.Stats(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, toStatsJSON(sb.ID(), st))
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCPU\tMEMORY / LIMIT\tPEAK\tOOM KILLS\tPIDS / LIMIT\tDISK / LIMIT")
			writeStatsRow(tw, sb.ID(), st)
			if err := tw.Flush(); err != nil || !watch {
				return err
			}
			// One row a second, under the same header, until interrupted or
			// the sandbox ends.
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
				}
				if st, err = sb.Stats(cmd.Context()); err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				writeStatsRow(tw, sb.ID(), st)
				if err := tw.Flush(); err != nil {
					return err
				}
			}
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the reading as JSON (bytes and seconds)")
	c.Flags().BoolVarP(&watch, "watch", "w", false, "print a new reading every second until interrupted")
	return c
}

func writeStatsRow(w io.Writer, id string, st *sbx.Stats) {
	peak := "-"
	if st.MemoryPeakBytes > 0 {
		peak = humanSize(st.MemoryPeakBytes)
	}
	disk := "-"
	if st.DiskLimitBytes > 0 {
		disk = humanSize(st.DiskBytes) + " / " + humanSize(st.DiskLimitBytes)
	} else if st.DiskBytes > 0 {
		disk = humanSize(st.DiskBytes)
	}
	fmt.Fprintf(w, "%s\t%.2fs\t%s / %s\t%s\t%d\t%d / %s\t%s\n", id, st.CPU.Seconds(),
		humanSize(st.MemoryBytes), limitSize(st.MemoryLimitBytes), peak, st.OOMKills,
		st.Pids, limitCount(st.PidsLimit), disk)
}

func limitSize(n int64) string {
	if n <= 0 {
		return "none"
	}
	return humanSize(n)
}

func limitCount(n int64) string {
	if n <= 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

// statsJSON is the --json form: plain numbers, bytes and seconds.
type statsJSON struct {
	ID               string    `json:"id"`
	CPUSeconds       float64   `json:"cpu_seconds"`
	MemoryBytes      int64     `json:"memory_bytes"`
	MemoryPeakBytes  int64     `json:"memory_peak_bytes"`
	MemoryLimitBytes int64     `json:"memory_limit_bytes"`
	OOMKills         int64     `json:"oom_kills"`
	Pids             int64     `json:"pids"`
	PidsLimit        int64     `json:"pids_limit"`
	DiskBytes        int64     `json:"disk_bytes"`
	DiskLimitBytes   int64     `json:"disk_limit_bytes"`
	ReadAt           time.Time `json:"read_at"`
}

func toStatsJSON(id string, st *sbx.Stats) statsJSON {
	return statsJSON{
		ID: id, CPUSeconds: st.CPU.Seconds(),
		MemoryBytes: st.MemoryBytes, MemoryPeakBytes: st.MemoryPeakBytes, MemoryLimitBytes: st.MemoryLimitBytes,
		OOMKills: st.OOMKills, Pids: st.Pids, PidsLimit: st.PidsLimit,
		DiskBytes: st.DiskBytes, DiskLimitBytes: st.DiskLimitBytes, ReadAt: st.ReadAt,
	}
}

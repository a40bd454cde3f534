package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sbx-run/sbx"
)

func newImagesPullCmd() *cobra.Command {
	var quiet bool
	c := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Pull an image into the server's cache, with progress",
		Long: `Pull an image into the server's cache (again, if its tag moved), showing
progress per layer: bars on a terminal, one line per layer step otherwise.`,
		Example: `  sbx images pull python:3.11
  sbx images pull -q 127.0.0.1:5000/tools/busybox:1`,
		Args: exactArgs(1, "one image reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var progress func(sbx.ImageProgress)
			if !quiet {
				pr := newPullProgress(out, false)
				if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					pr.tty = true
					if w, _, err := term.GetSize(int(f.Fd())); err == nil {
						pr.width = w
					}
				}
				progress = pr.update
			}
			img, err := client.PullImage(cmd.Context(), args[0], progress)
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(out, img.Ref)
				return nil
			}
			fmt.Fprintf(out, "pulled %s (%s, %s)\n", img.Ref, shortDigest(img.Digest), humanSize(img.Size))
			return nil
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image's reference once pulled")
	return c
}

// pullProgress renders a pull's progress: on a terminal one line per layer
// with a bar, redrawn in place; elsewhere (logs, pipes) one plain line each
// time a layer changes status, so the output stays short and greppable.
type pullProgress struct {
	w      io.Writer
	tty    bool
	width  int // terminal columns, when known: longer lines would wrap and break the redraw
	order  []string
	layers map[string]sbx.ImageProgress
	drawn  int // lines drawn last time (tty)
}

func newPullProgress(w io.Writer, tty bool) *pullProgress {
	return &pullProgress{w: w, tty: tty, layers: map[string]sbx.ImageProgress{}}
}

func (p *pullProgress) update(ev sbx.ImageProgress) {
	if ev.Layer == "" {
		switch {
		case ev.Status == sbx.ImageStatusResolving && !p.tty:
			fmt.Fprintf(p.w, "%s: resolving\n", ev.Ref)
		case ev.Status == sbx.ImageStatusDone && p.tty && len(p.order) > 0:
			// The store reports the end once for the image: close every bar.
			for l, lp := range p.layers {
				lp.Status = sbx.ImageStatusDone
				p.layers[l] = lp
			}
			p.redraw()
		}
		return
	}
	prev, seen := p.layers[ev.Layer]
	if !seen {
		p.order = append(p.order, ev.Layer)
	}
	p.layers[ev.Layer] = ev
	if !p.tty {
		if !seen || prev.Status != ev.Status {
			fmt.Fprintf(p.w, "%s: %s\n", shortDigest(ev.Layer), plainStatus(ev))
		}
		return
	}
	p.redraw()
}

func plainStatus(ev sbx.ImageProgress) string {
	if ev.Total > 0 && ev.Status != sbx.ImageStatusCached {
		return fmt.Sprintf("%s (%s)", ev.Status, humanSize(ev.Total))
	}
	return ev.Status
}

// redraw moves the cursor up over the lines drawn last time and draws
// every layer's line again.
func (p *pullProgress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, l := range p.order {
		b.WriteString("\x1b[2K")
		line := progressLine(p.layers[l])
		if p.width > 1 && len(line) >= p.width {
			line = line[:p.width-1]
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, b.String())
}

// barWidth is the number of cells of a progress bar.
const barWidth = 24

// progressLine is one layer's line: digest, bar, bytes and status.
func progressLine(ev sbx.ImageProgress) string {
	done := ev.Done
	switch ev.Status {
	case sbx.ImageStatusUnpacking, sbx.ImageStatusCached, sbx.ImageStatusDone:
		done = ev.Total // the download is complete
	}
	if ev.Total <= 0 {
		return fmt.Sprintf("%s  %-*s  %s", shortDigest(ev.Layer), barWidth+2, "", ev.Status)
	}
	done = min(max(done, 0), ev.Total)
	filled := int(done * barWidth / ev.Total)
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	return fmt.Sprintf("%s  [%s]  %s / %s  %s", shortDigest(ev.Layer), bar, humanSize(done), humanSize(ev.Total), ev.Status)
}

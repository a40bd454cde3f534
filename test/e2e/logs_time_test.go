package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// stampedLine is one line of a log read with Timestamps.
type stampedLine struct {
	at   time.Time
	text string
}

func parseStamped(t *testing.T, out string) []stampedLine {
	t.Helper()
	var lines []stampedLine
	for _, l := range strings.SplitAfter(out, "\n") {
		if l == "" {
			continue
		}
		ts, text, ok := strings.Cut(l, " ")
		at, err := time.Parse(sbx.LogTimeFormat, ts)
		if !ok || err != nil || len(ts) != len(sbx.LogTimeFormat)-len("Z07:00")+len("Z") {
			t.Fatalf("line %q has no fixed-width timestamp prefix: %v", l, err)
		}
		lines = append(lines, stampedLine{at, text})
	}
	return lines
}

// TestLogsSinceAndTimestamps: a main command prints a line, sleeps, prints
// another. Times are the agent's read times: in order and within the test's
// wall-clock window; since between the two lines gives only the second, with
// and without follow, through the SDK and the CLI.
func TestLogsSinceAndTimestamps(t *testing.T) { testLogsSince(t, startServer(t)) }

// TestLogsSinceAndTimestampsRunsc: under gVisor a log that is not followed
// is read by the host from the state dir, index included.
func TestLogsSinceAndTimestampsRunsc(t *testing.T) {
	testenv.Require(t, true, "runsc")
	testLogsSince(t, startServer(t, "--runtime", "runsc"))
}

func testLogsSince(t *testing.T, s *server) {
	c := s.client()
	ctx := ctxT(t, 3*time.Minute)

	before := time.Now()
	box, err := c.Run(ctx, sbx.Image("busybox"), sbx.Command("sh", "-c", "echo first; sleep 2; echo second"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(opts sbx.LogOptions) string {
		t.Helper()
		var out bytes.Buffer
		if err := box.Logs(ctx, &out, &out, opts); err != nil {
			t.Fatalf("logs %+v: %v", opts, err)
		}
		return out.String()
	}

	// Wait for the first line (no follow), then follow from just after it:
	// only the second line comes, and the stream ends with the command.
	var first stampedLine
	for {
		if ls := parseStamped(t, read(sbx.LogOptions{Timestamps: true})); len(ls) > 0 {
			first = ls[0]
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the first line never came")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := read(sbx.LogOptions{Follow: true, Since: first.at.Add(time.Millisecond)}); got != "second\n" {
		t.Fatalf("follow since after the first line: %q, want the second only", got)
	}
	after := time.Now()

	// Follow from the start (the command has ended: the stream ends too).
	all := parseStamped(t, read(sbx.LogOptions{Follow: true, Timestamps: true}))
	if len(all) != 2 || all[0].text != "first\n" || all[1].text != "second\n" {
		t.Fatalf("timestamped log: %+v", all)
	}
	for _, l := range all {
		if l.at.Before(before) || l.at.After(after) {
			t.Errorf("line %q at %v, outside the test's window [%v, %v]", l.text, l.at, before, after)
		}
	}
	if !all[0].at.Before(all[1].at) {
		t.Errorf("times out of order: %v then %v", all[0].at, all[1].at)
	}
	mid := all[0].at.Add(all[1].at.Sub(all[0].at) / 2)
	for _, tc := range []struct {
		opts sbx.LogOptions
		want string
	}{
		{sbx.LogOptions{Since: mid}, "second\n"},
		{sbx.LogOptions{Since: all[0].at}, "first\nsecond\n"}, // since is inclusive
		{sbx.LogOptions{Since: before.Add(-time.Hour)}, "first\nsecond\n"},
		{sbx.LogOptions{Since: after.Add(time.Hour)}, ""},
		{sbx.LogOptions{Since: mid, Tail: 2}, "second\n"},       // the later start wins
		{sbx.LogOptions{Since: all[0].at, Tail: 1}, "second\n"}, // both ways
	} {
		if got := read(tc.opts); got != tc.want {
			t.Errorf("logs since %v tail %d: %q, want %q", tc.opts.Since.Sub(all[0].at), tc.opts.Tail, got, tc.want)
		}
	}
	if ls := parseStamped(t, read(sbx.LogOptions{Since: mid, Timestamps: true})); len(ls) != 1 || !ls[0].at.Equal(all[1].at) {
		t.Errorf("since mid with timestamps: %+v, want the second line at %v", ls, all[1].at)
	}

	// The CLI: docker's flags.
	out, errOut, code := s.cli("", "logs", "--since", mid.UTC().Format(time.RFC3339Nano), "--timestamps", box.ID())
	if ls := parseStamped(t, out); code != 0 || len(ls) != 1 || ls[0].text != "second\n" {
		t.Errorf("sbx logs --since mid --timestamps: code %d %q (%s)", code, out, errOut)
	}
	out, errOut, code = s.cli("", "logs", "--since", "1h", box.ID())
	if code != 0 || out != "first\nsecond\n" {
		t.Errorf("sbx logs --since 1h: code %d %q (%s)", code, out, errOut)
	}
	_, _, code = s.cli("", "logs", "--since", "yesterday", box.ID())
	if code == 0 {
		t.Errorf("sbx logs --since yesterday: exit 0, want a usage error")
	}
}

package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// fakeClock is a logWriter clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTimedLog(t *testing.T, max int64) (*logWriter, *fakeClock, string) {
	t.Helper()
	dir := t.TempDir()
	w, err := openLog(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	c := &fakeClock{time.Unix(1_700_000_000, 0)}
	w.now = c.now
	return w, c, dir
}

type piece struct {
	data string
	at   int64
}

func readPieces(t *testing.T, dir string, q logQuery, w *logWriter) []piece {
	t.Helper()
	r, err := openLogReader(dir, q, w)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []piece
	for {
		b, err := r.Next(context.Background())
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, piece{string(b), r.At()})
	}
}

func joined(ps []piece) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.data)
	}
	return b.String()
}

func TestLogTimesAndSince(t *testing.T) {
	w, c, dir := newTimedLog(t, 1<<20)
	t0 := c.t
	w.Write([]byte("one\ntw"))
	c.t = t0.Add(time.Second)
	w.Write([]byte("o\nthree\n"))
	c.t = c.t.Add(indexGrain / 2) // within the grain: shares the last time
	w.Write([]byte("four\n"))
	c.t = t0.Add(2 * time.Second)
	w.Write([]byte("five\n"))
	w.end()

	got := readPieces(t, dir, logQuery{timed: true}, w)
	want := []piece{
		{"one\ntw", t0.UnixNano()},
		{"o\nthree\nfour\n", t0.Add(time.Second).UnixNano()},
		{"five\n", t0.Add(2 * time.Second).UnixNano()},
	}
	if len(got) != len(want) {
		t.Fatalf("pieces %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("piece %d: %v, want %v", i, got[i], want[i])
		}
	}
	// Untimed reads are as before.
	if s := joined(readPieces(t, dir, logQuery{}, w)); s != "one\ntwo\nthree\nfour\nfive\n" {
		t.Fatalf("untimed: %q", s)
	}
	for _, tc := range []struct {
		since time.Time
		tail  int
		want  string
	}{
		{t0, 0, "one\ntwo\nthree\nfour\nfive\n"},
		{t0.Add(-time.Hour), 0, "one\ntwo\nthree\nfour\nfive\n"},
		// "two" started before since: only the lines started after it.
		{t0.Add(time.Millisecond), 0, "three\nfour\nfive\n"},
		{t0.Add(time.Second), 0, "three\nfour\nfive\n"},
		{t0.Add(1500 * time.Millisecond), 0, "five\n"},
		{t0.Add(time.Hour), 0, ""},
		// With tail, the later start wins.
		{t0, 2, "four\nfive\n"},
		{t0.Add(2 * time.Second), 3, "five\n"},
	} {
		got := readPieces(t, dir, logQuery{since: tc.since.UnixNano(), tail: tc.tail}, w)
		if s := joined(got); s != tc.want {
			t.Errorf("since %v tail %d: %q, want %q", tc.since.Sub(t0), tc.tail, s, tc.want)
		}
		for _, p := range got {
			if p.at < tc.since.UnixNano() {
				t.Errorf("since %v: piece %q of %v", tc.since.Sub(t0), p.data, time.Unix(0, p.at).Sub(t0))
			}
		}
	}
}

func TestLogTimesNeverGoBack(t *testing.T) {
	w, c, dir := newTimedLog(t, 1<<20)
	t0 := c.t
	w.Write([]byte("a\n"))
	c.t = t0.Add(-time.Hour) // the wall clock stepped back
	w.Write([]byte("b\n"))
	c.t = t0.Add(time.Second)
	w.Write([]byte("c\n"))
	w.end()
	last := int64(0)
	for _, p := range readPieces(t, dir, logQuery{timed: true}, w) {
		if p.at < last {
			t.Fatalf("time went back at %q", p.data)
		}
		last = p.at
	}
}

func TestLogTimesAcrossRotation(t *testing.T) {
	const max = 64
	w, c, dir := newTimedLog(t, max)
	t0 := c.t
	var all strings.Builder
	for i := range 40 {
		c.t = t0.Add(time.Duration(i) * time.Second)
		line := strings.Repeat(string(rune('a'+i%26)), 5) + "\n"
		all.WriteString(line)
		w.Write([]byte(line))
	}
	w.end()
	// The bound is the same as without times: log and index of each file
	// together stay within max.
	for _, name := range []string{LogFile, LogFile + ".1"} {
		var total int64
		for _, n := range []string{name, indexName(name)} {
			fi, err := os.Stat(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			total += fi.Size()
		}
		if total > max {
			t.Errorf("%s and its index take %d bytes, over %d", name, total, max)
		}
	}
	got := readPieces(t, dir, logQuery{timed: true}, w)
	if s := joined(got); s == "" || !strings.HasSuffix(all.String(), s) {
		t.Fatalf("kept %q, not a suffix of the output", s)
	}
	for _, p := range got {
		i := int(time.Unix(0, p.at).Sub(t0) / time.Second)
		want := strings.Repeat(string(rune('a'+i%26)), 5) + "\n"
		if !strings.Contains(want, p.data) {
			t.Errorf("piece %q has the time of write %d (%q)", p.data, i, want)
		}
	}
	since := t0.Add(38 * time.Second)
	if s := joined(readPieces(t, dir, logQuery{since: since.UnixNano()}, w)); s != "mmmmm\nnnnnn\n" {
		t.Fatalf("since the last two writes: %q", s)
	}
	// The host reads the same.
	s, err := ReadLogs(dir, sandbox.LogOptions{Since: since, Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var host strings.Builder
	for {
		o, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if o.At.Before(since) {
			t.Errorf("host read %q at %v, before since", o.Data, o.At)
		}
		host.Write(o.Data)
	}
	if host.String() != "mmmmm\nnnnnn\n" {
		t.Fatalf("host since: %q", host.String())
	}
}

// TestLogTinyWritesStayBounded: a command writing a byte at a time, each in a
// new millisecond, fills the bound with index records and text together; it
// never goes over it.
func TestLogTinyWritesStayBounded(t *testing.T) {
	const max = 4096
	w, c, dir := newTimedLog(t, max)
	for i := range 5000 {
		c.t = c.t.Add(indexGrain)
		w.Write([]byte{"x\n"[i%2]})
	}
	w.end()
	for _, name := range []string{LogFile, LogFile + ".1"} {
		var total int64
		for _, n := range []string{name, indexName(name)} {
			fi, err := os.Stat(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			total += fi.Size()
		}
		if total > max {
			t.Errorf("%s and its index take %d bytes, over %d", name, total, max)
		}
	}
	ps := readPieces(t, dir, logQuery{timed: true}, w)
	for i := 1; i < len(ps); i++ {
		if ps[i].at <= ps[i-1].at || len(ps[i].data) != 1 {
			t.Fatalf("piece %d: %q at %d after %d", i, ps[i].data, ps[i].at, ps[i-1].at)
		}
	}
}

// TestLogFollowSince: a follower with a since in the future gets only what
// is read from then on, and a follower's pieces get their own times even
// when the writer is ahead of the index look.
func TestLogFollowSince(t *testing.T) {
	w, c, dir := newTimedLog(t, 1<<20)
	t0 := c.t
	w.Write([]byte("old\n"))
	since := t0.Add(time.Second)
	r, err := openLogReader(dir, logQuery{since: since.UnixNano(), timed: true}, w)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c.t = t0.Add(500 * time.Millisecond)
	w.Write([]byte("early\n"))
	c.t = since
	w.Write([]byte("new\n"))
	w.end()
	var got []piece
	for {
		b, err := r.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, piece{string(b), r.At()})
	}
	if len(got) != 1 || got[0] != (piece{"new\n", since.UnixNano()}) {
		t.Fatalf("followed %v", got)
	}
}

// BenchmarkLogWrite is the cost of the main command's log sink per write,
// with the time index and without (as before it existed). Real clock: a
// write within a millisecond of the last record adds none.
func BenchmarkLogWrite(b *testing.B) {
	for _, size := range []int{64, 32 << 10} {
		for _, index := range []bool{false, true} {
			name := fmt.Sprintf("%dB/index=%v", size, index)
			b.Run(name, func(b *testing.B) {
				w, err := openLog(b.TempDir(), DefaultLogMaxBytes)
				if err != nil {
					b.Fatal(err)
				}
				defer w.close()
				w.Write([]byte("\n")) // makes the files
				if !index {
					w.idx.Close()
					w.idx = nil
				}
				data := bytes.Repeat([]byte("x"), size-1)
				data = append(data, '\n')
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					w.Write(data)
				}
			})
		}
	}
}

func TestSinceNano(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Time{}, 0},
		{time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Unix(5, 7), 5e9 + 7},
		{time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
	} {
		if got := sinceNano(tc.t); got != tc.want {
			t.Errorf("sinceNano(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

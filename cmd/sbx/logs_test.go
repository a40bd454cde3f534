package main

import (
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                             now.Add(-10 * time.Minute),
		"1h30m":                           now.Add(-90 * time.Minute),
		"0s":                              now,
		"2026-11-27T02:00:00Z":            time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC),
		"2026-11-27T02:00:00.5+01:00":     time.Date(2026, 11, 27, 1, 0, 0, 5e8, time.UTC),
		"2026-11-27":                      time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
		"1700000000":                      time.Unix(1700000000, 0),
		"1700000000.25":                   time.Unix(1700000000, 25e7),
		" 2026-11-27T02:00:00.123456789Z": time.Date(2026, 11, 27, 2, 0, 0, 123456789, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-10m", "-5", "1e300", "2026-13-01"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

package bench

import (
	"math"
	"sort"
	"time"
)

// Summary describes a set of latency samples, in milliseconds (JSON keeps
// them readable and plotting needs floats anyway).
type Summary struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// Ms converts a duration to fractional milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summarize sorts a copy of the samples (ms) and returns their summary; an
// empty set gives the zero Summary.
func Summarize(samples []float64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Summary{
		N:    len(s),
		Min:  s[0],
		Mean: sum / float64(len(s)),
		P50:  Percentile(s, 50),
		P95:  Percentile(s, 95),
		P99:  Percentile(s, 99),
		Max:  s[len(s)-1],
	}
}

// Percentile returns the p-th percentile (0..100) of sorted samples by the
// nearest-rank method: the smallest sample with at least p% of the samples
// at or below it. With few samples a high percentile is the maximum, which
// is the honest answer (no interpolation invents a value never observed).
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// PerSecond buckets event times (offsets from the start) into counts per
// whole second over [0, dur), for throughput-over-time charts.
// SecondHalf is the mean of the later half of per-second counts (the
// middle second goes to the later half): a rate that only holds while
// work is deferred, and then falls, shows there and not in the mean of
// the whole run. NaN for fewer than 2 seconds.
func SecondHalf(per []int) float64 {
	if len(per) < 2 {
		return math.NaN()
	}
	later := per[len(per)/2:]
	sum := 0
	for _, c := range later {
		sum += c
	}
	return float64(sum) / float64(len(later))
}

func PerSecond(events []time.Duration, dur time.Duration) []int {
	n := int(math.Ceil(dur.Seconds()))
	if n < 1 {
		n = 1
	}
	out := make([]int, n)
	for _, e := range events {
		i := int(e / time.Second)
		if i >= 0 && i < n {
			out[i]++
		}
	}
	return out
}

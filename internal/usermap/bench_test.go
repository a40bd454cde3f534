package usermap

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/testenv"
)

// BenchmarkMake is the making of one user namespace by a Maker's helper, as
// a create of a fresh uid slot has it made (ahead, in the background): the
// wall time of a request ("make-µs", median) and the helper's CPU per
// namespace ("helper-cpu-µs", its /proc stat over all the requests).
func BenchmarkMake(b *testing.B) {
	m := NewMaker(testenv.AgentBinary(b))
	defer m.Close()
	if _, err := m.Make(1 << 30); err != nil { // starts the helper
		b.Fatal(err)
	}
	cpu0, err := procCPU(m.Pid())
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		f, err := m.Make(1<<30 + uint32(i+1)*Size)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
		f.Close()
	}
	b.StopTimer()
	cpu1, err := procCPU(m.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(median(ds).Microseconds()), "make-µs")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "helper-cpu-µs")
}

// procCPU is the CPU time of process pid and of its children it waited for.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command (in parentheses, which may hold spaces).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

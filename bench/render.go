package bench

import (
	"fmt"
	"sort"
	"strings"
)

// RenderReport is the Markdown report of a run: the command, the machine,
// the results table, per-scenario latency summaries, error counts and the
// charts (by file name, relative to the report).
func RenderReport(r *Report, floor string, charts []string) string {
	var b strings.Builder
	m := r.Machine
	b.WriteString("# sbx benchmark report\n\n")
	fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	fmt.Fprintf(&b, "Machine: %s, %d CPUs (%s), %d MiB RAM, Linux %s, %s; OCI runtime %s; %s.\n",
		m.Host, m.CPUs, m.CPUModel, m.MemTotalMiB, m.Kernel, m.GoVersion, m.OCIRuntime, orDash(m.Podman))
	fmt.Fprintf(&b, "sbx commit %s; SDK to server over %s; started %s, took %ds; load average before %s, after %s.\n\n",
		orDash(m.Commit), transportName(m.Transport), m.StartedAt, m.DurationSec, m.LoadBefore, m.LoadAfter)
	b.WriteString("## Results\n\n")
	b.WriteString("Ratios are sbx ÷ baseline: below 1 is better for times and memory, above 1 for rates.\n\n")
	b.WriteString(Markdown(r.Metrics, floor))
	b.WriteString("\n## Latency by scenario\n\n")
	b.WriteString(LatencyTable(r.Scenarios))
	if errs := ErrorTable(r.Scenarios); errs != "" {
		b.WriteString("\n## Errors by reason\n\n")
		b.WriteString(errs)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(charts) > 0 {
		b.WriteString("\n## Charts\n\n")
		for _, c := range charts {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(c, ".png"), c)
		}
	}
	return b.String()
}

// LatencyTable lists every scenario that has latencies: n, p50, p95, p99,
// max and what exactly was timed.
func LatencyTable(scen []*Scenario) string {
	var b strings.Builder
	b.WriteString("| system | scenario | n | p50 ms | p95 ms | p99 ms | max ms | what is timed |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, s := range scen {
		if s.Latency == nil {
			continue
		}
		l := s.Latency
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n",
			s.System, s.Name, l.N, num(l.P50), num(l.P95), num(l.P99), num(l.Max), escape(s.Note))
	}
	return b.String()
}

// ErrorTable lists the failures of every scenario by reason, or "" if
// there were none.
func ErrorTable(scen []*Scenario) string {
	var rows []string
	for _, s := range scen {
		keys := make([]string, 0, len(s.Errors))
		for k := range s.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %d |", s.System, s.Name, escape(k), s.Errors[k]))
		}
	}
	if len(rows) == 0 {
		return ""
	}
	return "| system | scenario | reason | count |\n|---|---|---|---:|\n" + strings.Join(rows, "\n") + "\n"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// transportName says how the SDK reached the server.
func transportName(t string) string {
	switch t {
	case "unix":
		return "the API's Unix socket"
	case "tcp":
		return "loopback TCP"
	}
	return orDash(t)
}

package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
)

// Report is everything one run measured; it is written as JSON as is.
type Report struct {
	Command   string         `json:"command"`
	Machine   Machine        `json:"machine"`
	Config    Config         `json:"config"`
	Scenarios []*Scenario    `json:"scenarios"`
	Metrics   []Metric       `json:"metrics"`
	Notes     []string       `json:"notes,omitempty"`
	Extra     map[string]any `json:"extra,omitempty"`
}

// Machine describes where the run happened, so figures can be compared.
type Machine struct {
	Host        string `json:"host"`
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	MemTotalMiB int64  `json:"mem_total_mib"`
	LoadBefore  string `json:"load_before"`
	LoadAfter   string `json:"load_after"`
	Commit      string `json:"commit,omitempty"`
	GoVersion   string `json:"go_version"`
	OCIRuntime  string `json:"oci_runtime"`
	// Transport is how the SDK reached the server: "unix" or "tcp".
	Transport   string `json:"transport,omitempty"`
	Podman      string `json:"podman,omitempty"`
	StartedAt   string `json:"started_at"`
	DurationSec int    `json:"duration_s"`
}

// Scenario is one measured thing on one system ("sbx", "podman", "crun").
type Scenario struct {
	Name   string `json:"name"`
	System string `json:"system"`
	// Samples are latencies in ms, in the order measured.
	Samples []float64 `json:"samples_ms,omitempty"`
	Latency *Summary  `json:"latency,omitempty"`
	// Values holds scalar results (throughput, memory, counts).
	Values map[string]float64 `json:"values,omitempty"`
	// Series holds sequences such as creates per second over time.
	Series map[string][]float64 `json:"series,omitempty"`
	// Errors counts failures by reason (QUOTA_EXCEEDED apart from the rest).
	Errors map[string]int `json:"errors,omitempty"`
	Note   string         `json:"note,omitempty"`
}

// Find returns the scenario with that name and system, or nil.
func (r *Report) Find(name, system string) *Scenario {
	for _, s := range r.Scenarios {
		if s.Name == name && s.System == system {
			return s
		}
	}
	return nil
}

// Target is a goal from issue 6: the value must be at most (Max) or at
// least (!Max) Value.
type Target struct {
	Value float64 `json:"value"`
	Max   bool    `json:"max"`
}

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	if t.Max {
		return v <= t.Value
	}
	return v >= t.Value
}

func (t Target) String() string {
	if t.Max {
		return "≤ " + num(t.Value)
	}
	return "≥ " + num(t.Value)
}

// Metric is one row of the results table: sbx's figure, its target and the
// baselines' figures for the same thing (nil where not measured).
type Metric struct {
	Name   string   `json:"name"`
	Unit   string   `json:"unit"`
	SBX    *float64 `json:"sbx,omitempty"`
	Target *Target  `json:"target,omitempty"`
	Podman *float64 `json:"podman,omitempty"`
	Crun   *float64 `json:"floor,omitempty"`
	// Host is the same work on the host with no container at all (the
	// host floor, hostfloor.go): what this machine does, whatever sbx does.
	Host *float64 `json:"host,omitempty"`
	// LowerIsBetter says how to read the ratios (latencies, memory).
	LowerIsBetter bool   `json:"lower_is_better"`
	Note          string `json:"note,omitempty"`
}

// F returns a pointer to v, or nil when v is NaN (not measured).
func F(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

// num formats a figure with about three significant digits.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func opt(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	return num(*v) + " " + unit
}

// ratio is sbx / baseline, written "0.12×"; "—" when either is missing.
func ratio(sbxV, base *float64) string {
	if sbxV == nil || base == nil || *base == 0 {
		return "—"
	}
	return num(*sbxV / *base) + "×"
}

// Markdown renders the metrics as a table: figure, target, whether it is
// met, each baseline and sbx's ratio to it. Ratios are sbx ÷ baseline, so
// below 1 is better for latencies and memory, above 1 for throughput.
func Markdown(metrics []Metric, floorName string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| metric | sbx | target | met | podman | sbx ÷ podman | %s (floor) | sbx ÷ %s | host, no container | sbx ÷ host |\n", floorName, floorName)
	b.WriteString("|---|---:|---:|:-:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range metrics {
		target, met := "—", "—"
		if m.Target != nil {
			target = m.Target.String() + " " + m.Unit
			if m.SBX != nil {
				met = "no"
				if m.Target.Met(*m.SBX) {
					met = "yes"
				}
			}
		}
		name := m.Name
		if m.Note != "" {
			name += " (" + m.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			escape(name), opt(m.SBX, m.Unit), target, met,
			opt(m.Podman, m.Unit), ratio(m.SBX, m.Podman),
			opt(m.Crun, m.Unit), ratio(m.SBX, m.Crun),
			opt(m.Host, m.Unit), ratio(m.SBX, m.Host))
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// WriteJSON writes the report, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

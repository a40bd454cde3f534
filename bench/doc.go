// Package bench is sbx's benchmark harness: it drives a real `sbx serve`
// through the Go SDK (cold create, exec round trip, file throughput,
// sustained creates, concurrent bursts, density) and, on the same busybox
// image, the baselines a user would pick instead (podman run, and the bare
// OCI runtime as the floor), then writes a JSON report, a Markdown table
// with each figure next to its target and the baselines, and PNG charts.
// cmd/sbx-bench is its command; the scenarios run only against the public
// SDK, as a user's program would.
package bench

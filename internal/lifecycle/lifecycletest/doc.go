// Package lifecycletest holds a fake of sbx's own sandbox.Runtime (and its
// Agent) for the unit tests of internal/lifecycle and internal/server: its
// sandboxes are goroutines with scripted main commands and processes, and
// files in a map. Integration tests use the real runtimes instead.
package lifecycletest

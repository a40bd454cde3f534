// Package lifecycle is sbx's sandbox lifecycle manager: it validates create
// requests, applies session defaults, quotas and idempotency, drives a
// sandbox.Runtime through PENDING → CREATING → RUNNING → TERMINATING →
// COMPLETED | FAILED | TERMINATED, records every transition in a
// store.Store, enforces lifetimes, session leases and retention,
// re-attaches to running sandboxes after a server restart, and keeps warm
// pools of created, idle sandboxes that matching creates claim (pool*.go).
//
// It lives apart from internal/sandbox because it uses internal/store, which
// imports internal/sandbox. The store is the source of truth: everything the
// manager enforces (expiry, leases, retention) is computed from stored
// records, so it survives restarts; lifetimes are scheduled in memory from
// them (deadlines.go), re-read in full at start and once a minute.
package lifecycle

// Package secrets is sbx's per-tenant secret manager: named values that
// sandboxes receive as environment variables, stored encrypted at rest.
//
// A value is sealed with AES-256-GCM under the server's key, with the
// tenant id and the secret's name as additional data, so a row copied to
// another tenant or name fails to open instead of leaking there. The
// Store interface is what the record stores (internal/store/sqlite and
// postgres) implement for it; storetest has its conformance suite.
// Values leave this package only through Resolve, for the lifecycle
// manager to hand to the sandbox's agent: no API call returns them.
package secrets

package store

// Bounds of tenant and key administration, enforced by every store inside
// the transaction that inserts, so that concurrent creates cannot pass them.
const (
	// MaxTenants bounds the tenants of one server (or of replicas sharing
	// one store).
	MaxTenants = 10000
	// MaxAPIKeysPerTenant bounds the API keys of one tenant.
	MaxAPIKeysPerTenant = 100
)

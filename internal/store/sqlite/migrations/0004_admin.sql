-- Version 4: tenant and API-key administration. Keys get an operator's
-- label; tenants their creation time (0 for those made before).

ALTER TABLE api_keys ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
-- ListAPIKeys reads a tenant's keys oldest first.
DROP INDEX api_keys_tenant;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at, id);

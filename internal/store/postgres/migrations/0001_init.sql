-- Version 1: sandboxes, sessions, tenants, API keys.
-- Times are BIGINT Unix nanoseconds (0 = unset): timestamptz stops at
-- microseconds, and records must round-trip exactly. Ids use the "C"
-- collation so their order (the tie-break of list pages) is byte order.

CREATE TABLE sandboxes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    session_id   TEXT NOT NULL DEFAULT '',
    request_id   TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    max_lifetime BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT NOT NULL DEFAULT 0,
    ended_at     BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    spec         JSONB NOT NULL,
    start        JSONB NOT NULL,
    tags         TEXT[],
    exit         JSONB,
    transitions  JSONB NOT NULL
);

-- Listing is newest first, per tenant or across tenants.
CREATE INDEX sandboxes_tenant_created ON sandboxes (tenant_id, created_at DESC, id DESC);
CREATE INDEX sandboxes_created ON sandboxes (created_at DESC, id DESC);
-- Quota counts and state filters.
CREATE INDEX sandboxes_tenant_state ON sandboxes (tenant_id, state);
-- Idempotent creates: one request id per tenant.
CREATE UNIQUE INDEX sandboxes_tenant_request ON sandboxes (tenant_id, request_id) WHERE request_id <> '';
CREATE INDEX sandboxes_session ON sandboxes (session_id) WHERE session_id <> '';
-- Purging ended records.
CREATE INDEX sandboxes_ended ON sandboxes (ended_at) WHERE ended_at <> 0;
-- Tag filters (tags @> ARRAY[...]).
CREATE INDEX sandboxes_tags ON sandboxes USING GIN (tags);

CREATE TABLE sessions (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    defaults       JSONB NOT NULL,
    lease          BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL DEFAULT 0,
    closed_at      BIGINT NOT NULL DEFAULT 0,
    close_reason   TEXT NOT NULL DEFAULT ''
);
-- Open sessions are what the lease reaper and ListSessions read.
CREATE INDEX sessions_open ON sessions (tenant_id, created_at) WHERE closed_at = 0;

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL DEFAULT '',
    max_sandboxes INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT api_keys_hash_key UNIQUE (hash)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Version 1: sandboxes (with a tag index table), sessions, tenants, API keys.
-- Times are INTEGER Unix nanoseconds (0 = unset); nested parts are JSON text.

CREATE TABLE sandboxes (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    session_id   TEXT NOT NULL DEFAULT '',
    request_id   TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    max_lifetime INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER NOT NULL DEFAULT 0,
    ended_at     INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL DEFAULT 0,
    spec         TEXT NOT NULL,
    start        TEXT NOT NULL,
    tags         TEXT NOT NULL,
    exit         TEXT,
    transitions  TEXT NOT NULL
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

-- One row per distinct tag of a sandbox, so tag filters use an index. Rows go
-- with their sandbox (the writer connection enables foreign keys).
CREATE TABLE sandbox_tags (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, tag)
) WITHOUT ROWID;
CREATE INDEX sandbox_tags_tag ON sandbox_tags (tag, sandbox_id);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    defaults       TEXT NOT NULL,
    lease          INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL DEFAULT 0,
    closed_at      INTEGER NOT NULL DEFAULT 0,
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
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

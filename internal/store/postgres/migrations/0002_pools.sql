-- Version 2: idle sandboxes of warm pools (claimed by no tenant yet).

CREATE TABLE pool_sandboxes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    pool       TEXT NOT NULL,
    spec       JSONB NOT NULL,
    created_at BIGINT NOT NULL
);

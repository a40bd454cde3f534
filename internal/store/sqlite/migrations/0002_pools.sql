-- Version 2: idle sandboxes of warm pools (claimed by no tenant yet).

CREATE TABLE pool_sandboxes (
    id         TEXT PRIMARY KEY,
    pool       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The guardian's exports of everything the service holds about the family (GET
-- /api/v1/users/me/export): one row per export started, the record of who took the
-- family's data out and when, and what its rate limit counts (on every process).
CREATE TABLE data_exports (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    owner_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    started_at TIMESTAMP NOT NULL
);
CREATE INDEX data_exports_owner ON data_exports (owner_id, started_at);

-- Story generation: a story in pending/in_progress is its own job, claimed with a lease.
ALTER TABLE stories ADD COLUMN lease_owner TEXT;
ALTER TABLE stories ADD COLUMN lease_expires_at TIMESTAMP;
ALTER TABLE stories ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX stories_jobs ON stories (status, lease_expires_at, created_at);

-- Every provider call a generation made: for debugging and the operators' dashboards.
CREATE TABLE generation_steps (
    id TEXT PRIMARY KEY NOT NULL,
    story_id TEXT NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    chapter_number INTEGER,
    provider TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT,
    error_message TEXT
);
CREATE INDEX generation_steps_story ON generation_steps (story_id, started_at);
CREATE INDEX generation_steps_time ON generation_steps (started_at);

-- Story requests per account, for the creation quota shared by every process. Kept when
-- a story is deleted (deleting does not give quota back); gone with the account.
CREATE TABLE story_requests (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX story_requests_owner ON story_requests (owner_id, created_at);

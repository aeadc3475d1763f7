-- The retention purges (docs/privacy.md, Retention): one row per run, the audit of what
-- was deleted. A scheduled run takes its interval's slot first (slot = unix time /
-- interval, unique), so several processes purge once per interval; a run started by
-- hand (`jjongal purge`) has no slot.
CREATE TABLE purge_runs (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    slot BIGINT UNIQUE,
    -- 'scheduled' or 'command'
    trigger TEXT NOT NULL,
    process TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    conversations INTEGER NOT NULL DEFAULT 0,
    reply_audio INTEGER NOT NULL DEFAULT 0,
    voice_samples INTEGER NOT NULL DEFAULT 0,
    -- What went wrong, when the run did not finish its work.
    error TEXT
);
CREATE INDEX purge_runs_started ON purge_runs (started_at);

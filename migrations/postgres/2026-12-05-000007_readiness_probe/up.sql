-- /readyz writes (and deletes) one row here: readiness means writes work, not only
-- that the database answers (a full disk failed every write while reads went on).
CREATE TABLE readiness_probe (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    filler TEXT NOT NULL
);

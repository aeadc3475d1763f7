-- A guardian's request to write one chapter of a completed story again — its text, its
-- picture, its narration, any of them (POST /api/v1/stories/{id}/chapters/{n}/regenerate,
-- GraphQL regenerateChapter). A durable job: the story worker claims it by taking the
-- story's lease (the story stays `completed`), so a restart loses nothing and two workers
-- never work on one story. One at a time per story: the partial unique index.
CREATE TABLE chapter_regenerations (
    id TEXT PRIMARY KEY NOT NULL,
    story_id TEXT NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chapter_number INTEGER NOT NULL,
    redo_text BOOLEAN NOT NULL,
    redo_image BOOLEAN NOT NULL,
    redo_audio BOOLEAN NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed', 'failed')),
    failure_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX chapter_regenerations_one_per_story ON chapter_regenerations (story_id)
    WHERE status IN ('pending', 'in_progress');
CREATE INDEX chapter_regenerations_open ON chapter_regenerations (created_at)
    WHERE status IN ('pending', 'in_progress');
CREATE INDEX chapter_regenerations_story ON chapter_regenerations (story_id, created_at);

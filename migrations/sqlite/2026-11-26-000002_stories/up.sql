-- Conversations (filled by the conversation WebSocket), stories, chapters and media.
-- Text comparisons use SQLite's BINARY collation: Unicode code point order for UTF-8,
-- the same order PostgreSQL gives with COLLATE "C".
CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    child_name TEXT,
    child_age INTEGER,
    interests TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP
);
CREATE INDEX conversations_owner ON conversations (owner_id, created_at, id);

CREATE TABLE stories (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    title TEXT,
    title_from_guardian BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed', 'failed')),
    theme TEXT NOT NULL,
    characters TEXT NOT NULL DEFAULT '[]',
    length TEXT NOT NULL CHECK (length IN ('short', 'medium', 'long')),
    chapter_count INTEGER NOT NULL,
    child_name TEXT NOT NULL,
    child_age INTEGER NOT NULL,
    failure_reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX stories_owner_created ON stories (owner_id, created_at, id);
CREATE INDEX stories_owner_updated ON stories (owner_id, updated_at, id);
CREATE INDEX stories_owner_title ON stories (owner_id, title, id);
CREATE INDEX stories_status ON stories (status, created_at);

CREATE TABLE media_files (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    story_id TEXT REFERENCES stories (id) ON DELETE CASCADE,
    path TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX media_files_story ON media_files (story_id);
CREATE INDEX media_files_owner ON media_files (owner_id);

CREATE TABLE chapters (
    id TEXT PRIMARY KEY NOT NULL,
    story_id TEXT NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    chapter_number INTEGER NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    image_file_id TEXT REFERENCES media_files (id) ON DELETE SET NULL,
    audio_file_id TEXT REFERENCES media_files (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (story_id, chapter_number)
);

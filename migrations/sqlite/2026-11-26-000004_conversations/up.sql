-- What a conversation said, in order. Flagged child messages are kept (for the record and
-- the socket's echo) but never reach a story.
CREATE TABLE conversation_messages (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('child', 'assistant')),
    text TEXT NOT NULL,
    flagged BOOLEAN NOT NULL DEFAULT FALSE,
    audio_path TEXT,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (conversation_id, seq)
);

-- Voice samples for cloning (files live outside the media directory) and the cloned voice.
CREATE TABLE voice_samples (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    format TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX voice_samples_owner ON voice_samples (owner_id, created_at);
ALTER TABLE users ADD COLUMN voice_id TEXT;
ALTER TABLE users ADD COLUMN voice_status TEXT NOT NULL DEFAULT 'none';

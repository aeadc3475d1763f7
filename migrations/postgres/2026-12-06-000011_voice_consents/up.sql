-- The guardian's voice-cloning consent (contract §6): separate from sign-up's, given for
-- the guardian's own voice and one named voice provider, with the text agreed to and its
-- version. A withdrawal keeps the row (the record of what was agreed and when) and sets
-- withdrawn_at; samples are admitted, and a voice cloned, only under a row not withdrawn
-- whose provider is the one configured.
CREATE TABLE voice_consents (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    owner_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Whose voice the samples are: only 'guardian' (a child's voice is never cloned).
    voice_of TEXT NOT NULL CHECK (voice_of IN ('guardian')),
    -- The voice provider's address the samples go to ('none': kept on this server).
    provider TEXT NOT NULL,
    text_version TEXT NOT NULL,
    text TEXT NOT NULL,
    given_at TIMESTAMP NOT NULL,
    withdrawn_at TIMESTAMP
);
CREATE INDEX voice_consents_owner ON voice_consents (owner_id, given_at);

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

-- Nothing stored before this had the consent. Samples then included the child's raw-PCM
-- speech (counted as samples before the decision of 2026-12-05): all of them go (their
-- files are swept by the next purge: files without a row). Voices cloned without it are
-- recorded for deletion at the provider (`jjongal voices retry-deletions`) and no longer
-- used.
DELETE FROM voice_samples;
INSERT INTO voice_deletions (id, voice_id, owner_id, status, last_error, attempts, created_at, updated_at)
SELECT gen_random_uuid()::text, voice_id, id, 'pending',
       'cloned before voice-cloning consent existed; not yet deleted at the provider', 0,
       now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
FROM users WHERE voice_id IS NOT NULL;
UPDATE users SET voice_id = NULL, voice_status = 'none' WHERE voice_id IS NOT NULL OR voice_status <> 'none';

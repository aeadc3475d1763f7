-- Cloned voices the provider did not confirm deleted when their account or voice was
-- erased: the family's erasure completed here, and the operator sees (and retries or
-- settles) what is left at the provider. Rows stay as the record of what happened.
CREATE TABLE voice_deletions (
    id TEXT PRIMARY KEY NOT NULL,
    voice_id TEXT NOT NULL,
    -- The account the voice belonged to (it may no longer exist).
    owner_id TEXT NOT NULL,
    -- pending: still at the provider; deleted: the provider confirmed it later;
    -- forced: an operator settled it without the provider's confirmation.
    status TEXT NOT NULL,
    -- The provider's last answer (status, code, message).
    last_error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX voice_deletions_status ON voice_deletions (status, created_at);

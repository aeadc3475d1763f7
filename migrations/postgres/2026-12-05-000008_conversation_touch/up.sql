-- A conversation's updated_at follows its newest message, kept by the database: a turn is
-- one INSERT (the conversation's own UPDATE was a second statement). The idle end
-- (JJONGAL_CONVERSATION_IDLE_END_SECS) reads it.
CREATE FUNCTION conversation_messages_touch() RETURNS trigger AS $$
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at
    WHERE id = NEW.conversation_id AND updated_at < NEW.created_at;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER conversation_messages_touch AFTER INSERT ON conversation_messages
FOR EACH ROW EXECUTE FUNCTION conversation_messages_touch();
CREATE INDEX conversations_active_updated ON conversations (status, updated_at);

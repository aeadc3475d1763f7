DROP INDEX conversations_active_updated;
DROP TRIGGER conversation_messages_touch ON conversation_messages;
DROP FUNCTION conversation_messages_touch();

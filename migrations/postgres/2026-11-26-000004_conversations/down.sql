ALTER TABLE users DROP COLUMN voice_status;
ALTER TABLE users DROP COLUMN voice_id;
DROP TABLE voice_samples;
DROP TABLE conversation_messages;

ALTER TABLE conversation_messages ALTER COLUMN conversation_id TYPE TEXT COLLATE "default";
ALTER TABLE generation_steps ALTER COLUMN story_id TYPE TEXT COLLATE "default";
ALTER TABLE chapters
    ALTER COLUMN story_id TYPE TEXT COLLATE "default",
    ALTER COLUMN image_file_id TYPE TEXT COLLATE "default",
    ALTER COLUMN audio_file_id TYPE TEXT COLLATE "default";
ALTER TABLE media_files ALTER COLUMN story_id TYPE TEXT COLLATE "default";
ALTER TABLE stories ALTER COLUMN conversation_id TYPE TEXT COLLATE "default";

-- Every column that refers to an id declared COLLATE "C" now has that collation too (the
-- values are unchanged). Before, a join on such a pair, e.g. chapters.story_id =
-- stories.id, had two implicit collations and so none, and PostgreSQL could not use the
-- referring column's index: a page's chapters joined to its stories scanned every chapter.
ALTER TABLE stories ALTER COLUMN conversation_id TYPE TEXT COLLATE "C";
ALTER TABLE media_files ALTER COLUMN story_id TYPE TEXT COLLATE "C";
ALTER TABLE chapters
    ALTER COLUMN story_id TYPE TEXT COLLATE "C",
    ALTER COLUMN image_file_id TYPE TEXT COLLATE "C",
    ALTER COLUMN audio_file_id TYPE TEXT COLLATE "C";
ALTER TABLE generation_steps ALTER COLUMN story_id TYPE TEXT COLLATE "C";
ALTER TABLE conversation_messages ALTER COLUMN conversation_id TYPE TEXT COLLATE "C";

ALTER TABLE chapters DROP COLUMN audio_content_type;
ALTER TABLE chapters DROP COLUMN audio_path;
ALTER TABLE chapters DROP COLUMN image_content_type;
ALTER TABLE chapters DROP COLUMN image_path;

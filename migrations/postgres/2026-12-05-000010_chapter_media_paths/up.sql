-- A chapter records the path and content type of its illustration and narration beside
-- their file ids (written together by the transaction that links a file), so reading a
-- story or a page needs no media_files lookup: on PostgreSQL those lookups were 40 of the
-- 50 buffer reads of one story (issue 30). A path counts only while its file id is set:
-- a file's deletion clears the id (ON DELETE SET NULL) and so the path with it.
ALTER TABLE chapters ADD COLUMN image_path TEXT;
ALTER TABLE chapters ADD COLUMN image_content_type TEXT;
ALTER TABLE chapters ADD COLUMN audio_path TEXT;
ALTER TABLE chapters ADD COLUMN audio_content_type TEXT;
UPDATE chapters SET
    image_path = (SELECT path FROM media_files WHERE media_files.id = chapters.image_file_id),
    image_content_type =
        (SELECT content_type FROM media_files WHERE media_files.id = chapters.image_file_id),
    audio_path = (SELECT path FROM media_files WHERE media_files.id = chapters.audio_file_id),
    audio_content_type =
        (SELECT content_type FROM media_files WHERE media_files.id = chapters.audio_file_id)
WHERE image_file_id IS NOT NULL OR audio_file_id IS NOT NULL;

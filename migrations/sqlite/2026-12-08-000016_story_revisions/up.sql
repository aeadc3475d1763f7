-- A story's revision counts the changes to its chapters (their words, titles and media),
-- kept by the database, so no write path can forget it: the reads keep a story's chapters
-- in memory under the revision they were read at, and read them again only when the
-- story row, read with every request, shows another (store::chapter_cache).
ALTER TABLE stories ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
CREATE TRIGGER chapters_revise_story_insert AFTER INSERT ON chapters
BEGIN
    UPDATE stories SET revision = revision + 1 WHERE id = NEW.story_id;
END;
CREATE TRIGGER chapters_revise_story_update AFTER UPDATE ON chapters
BEGIN
    UPDATE stories SET revision = revision + 1 WHERE id IN (OLD.story_id, NEW.story_id);
END;
CREATE TRIGGER chapters_revise_story_delete AFTER DELETE ON chapters
BEGIN
    UPDATE stories SET revision = revision + 1 WHERE id = OLD.story_id;
END;

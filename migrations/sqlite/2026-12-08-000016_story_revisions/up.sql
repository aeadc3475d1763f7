-- A story's revision counts the changes to its chapters (their words, titles and media),
-- kept by the database, so no write path can forget it: the reads keep a story's chapters
-- in memory under the revision they were read at, and read them again only when the
-- story row, read with every request, shows another (store::chapter_cache). A revision
-- is at least the time of the change in microseconds, so it never repeats a value a running
-- process may hold, even after a restore brings back older rows or this migration runs
-- again; the stories already there start at the migration's time.
ALTER TABLE stories ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
UPDATE stories SET revision = CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER);
CREATE TRIGGER chapters_revise_story_insert AFTER INSERT ON chapters
BEGIN
    UPDATE stories SET revision = max(revision + 1, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)) WHERE id = NEW.story_id;
END;
CREATE TRIGGER chapters_revise_story_update AFTER UPDATE ON chapters
BEGIN
    UPDATE stories SET revision = max(revision + 1, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)) WHERE id IN (OLD.story_id, NEW.story_id);
END;
CREATE TRIGGER chapters_revise_story_delete AFTER DELETE ON chapters
BEGIN
    UPDATE stories SET revision = max(revision + 1, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)) WHERE id = OLD.story_id;
END;

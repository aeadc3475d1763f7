-- A story's revision counts the changes to its chapters (their words, titles and media),
-- kept by the database, so no write path can forget it: the reads keep a story's chapters
-- in memory under the revision they were read at, and read them again only when the
-- story row, read with every request, shows another (store::chapter_cache). A revision
-- is at least the time of the change in microseconds, so it never repeats a value a running
-- process may hold, even after a restore brings back older rows or this migration runs
-- again; the stories already there start at the migration's time.
ALTER TABLE stories ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
UPDATE stories SET revision = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
CREATE FUNCTION chapters_revise_story() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE stories
        SET revision = GREATEST(revision + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
        WHERE id = OLD.story_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.story_id <> OLD.story_id) THEN
        UPDATE stories
        SET revision = GREATEST(revision + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
        WHERE id = NEW.story_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER chapters_revise_story AFTER INSERT OR UPDATE OR DELETE ON chapters
FOR EACH ROW EXECUTE FUNCTION chapters_revise_story();

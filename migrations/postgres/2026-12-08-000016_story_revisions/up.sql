-- A story's revision counts the changes to its chapters (their words, titles and media),
-- kept by the database, so no write path can forget it: the reads keep a story's chapters
-- in memory under the revision they were read at, and read them again only when the
-- story row, read with every request, shows another (store::chapter_cache).
ALTER TABLE stories ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
CREATE FUNCTION chapters_revise_story() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE stories SET revision = revision + 1 WHERE id = OLD.story_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.story_id <> OLD.story_id) THEN
        UPDATE stories SET revision = revision + 1 WHERE id = NEW.story_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER chapters_revise_story AFTER INSERT OR UPDATE OR DELETE ON chapters
FOR EACH ROW EXECUTE FUNCTION chapters_revise_story();

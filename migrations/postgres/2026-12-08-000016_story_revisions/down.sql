DROP TRIGGER chapters_revise_story ON chapters;
DROP FUNCTION chapters_revise_story();
ALTER TABLE stories DROP COLUMN revision;

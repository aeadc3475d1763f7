DROP TRIGGER chapters_revise_story_insert;
DROP TRIGGER chapters_revise_story_update;
DROP TRIGGER chapters_revise_story_delete;
ALTER TABLE stories DROP COLUMN revision;

DROP TABLE story_requests;
DROP TABLE generation_steps;
DROP INDEX stories_jobs;
ALTER TABLE stories DROP COLUMN attempts;
ALTER TABLE stories DROP COLUMN lease_expires_at;
ALTER TABLE stories DROP COLUMN lease_owner;

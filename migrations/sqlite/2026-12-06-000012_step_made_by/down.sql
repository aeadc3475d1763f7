ALTER TABLE generation_steps DROP COLUMN made_by;

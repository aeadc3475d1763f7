-- Which provider and model made what a successful step produced ("openai-images
-- (gpt-image-1)", "offline-png"): the story's provenance (GraphQL Story.provenance) and
-- the label written into its media. Steps recorded before this have none.
ALTER TABLE generation_steps ADD COLUMN made_by TEXT;

-- A story page joins every chapter with its two media files by id. Through the primary
-- key's index each join was two B-tree searches (the index, then the row by rowid); this
-- index holds every column the join reads, so it is one. SQLite only: on PostgreSQL an
-- index-only scan depends on the visibility map (vacuum); not measured there.
CREATE INDEX media_files_lookup ON media_files (id, path, content_type);

DROP INDEX media_files_lookup;

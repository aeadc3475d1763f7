DROP TABLE chapter_regenerations;

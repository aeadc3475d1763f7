DROP TABLE chapters;
DROP TABLE media_files;
DROP TABLE stories;
DROP TABLE conversations;

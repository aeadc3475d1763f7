DROP TABLE voice_deletions;

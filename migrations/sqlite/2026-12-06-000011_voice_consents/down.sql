DROP TABLE voice_consents;

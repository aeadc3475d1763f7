DROP INDEX users_created;
DROP TABLE ops_audit;

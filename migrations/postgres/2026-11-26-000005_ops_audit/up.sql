-- Every operator read of other accounts' data: who, what, when.
CREATE TABLE ops_audit (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    operator_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX ops_audit_time ON ops_audit (created_at, id);
CREATE INDEX users_created ON users (created_at, id);

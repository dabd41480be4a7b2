-- BookLogr's `files` table: the list of exports its web app shows (GET /v1/files). Every export
-- this service finishes gets a row here, so BookLogr's web app and API list it. Created in
-- BookLogr's own shape only where BookLogr has not created it (development, tests, a database
-- without BookLogr): then there is one list of files everywhere. In a real deployment BookLogr's
-- API migrates first and this leaves its table as it is.
CREATE TABLE IF NOT EXISTS files (
    id          serial PRIMARY KEY,
    filename    varchar,
    owner_id    integer,
    created_at  timestamp without time zone
);
-- The per-user list and the download look-up; BookLogr's model declares no index.
CREATE INDEX IF NOT EXISTS booklogr_tasks_files_owner_idx ON files (owner_id, filename);

-- BookLogr's logout stores the token's jti here; every authenticated request looks its token up,
-- so the look-up must be an index scan (BookLogr's model declares no index on jti).
DO $$
BEGIN
    IF to_regclass('revoked_tokens') IS NOT NULL THEN
        CREATE INDEX IF NOT EXISTS booklogr_tasks_revoked_tokens_jti_idx ON revoked_tokens (jti);
    END IF;
END $$;

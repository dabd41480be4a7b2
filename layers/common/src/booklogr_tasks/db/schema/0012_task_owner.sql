-- Which rows of `tasks` are this service's, decided once per row when it is inserted: those whose
-- `data` parses as a JSON object with a top-level `owner_id` that is a positive integer (a JSON
-- number). BookLogr's API writes Python reprs, `{}` and free text into `data` and runs those tasks
-- itself; their `owner_id` stays NULL, and no listener statement and no cap ever looks at them.

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS owner_id bigint NULL;

-- The owner a task's data names, or NULL. Never raises: whatever text another program stores,
-- its insert goes through. The cheap checks first, so that only text that could be a JSON object
-- naming an owner pays for a parse (in a block of its own, as a failed cast ends the statement;
-- a subtransaction, so the function is not parallel safe).
-- `json`, not `jsonb`: the number is judged as written (`1e0` and `1.0` are not integers to the
-- service's own parser either), and `\u0000`, valid JSON that PostgreSQL cannot hold as text,
-- is read as another character (only the owner's number matters here, and it has none).
CREATE OR REPLACE FUNCTION booklogr_tasks_owner_of(payload text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    doc json;
    owner text;
BEGIN
    IF payload IS NULL OR strpos(payload, 'owner_id') = 0
       OR ltrim(payload, E' \t\r\n') NOT LIKE '{%' THEN
        RETURN NULL;
    END IF;
    BEGIN
        doc := replace(payload, '\u0000', '\u0001')::json;
        IF json_typeof(doc) <> 'object'
           OR json_typeof(doc -> 'owner_id') IS DISTINCT FROM 'number' THEN
            RETURN NULL;
        END IF;
        owner := (doc -> 'owner_id')::text;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
    -- Digits only, no sign, fraction or exponent; 19 digits at most before the range check.
    IF owner !~ '^[1-9][0-9]{0,18}$' OR owner::numeric > 9223372036854775807 THEN
        RETURN NULL;
    END IF;
    RETURN owner::bigint;
END
$$;

CREATE OR REPLACE FUNCTION booklogr_tasks_classify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.owner_id := booklogr_tasks_owner_of(NEW.data);
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tasks_classify ON tasks;
CREATE TRIGGER tasks_classify
    BEFORE INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION booklogr_tasks_classify();

-- The rows already there, classified by the same rule. Only rows that are this service's are
-- written: BookLogr's stay byte for byte as they are.
UPDATE tasks SET owner_id = booklogr_tasks_owner_of(data)
 WHERE owner_id IS NULL AND booklogr_tasks_owner_of(data) IS NOT NULL;

-- The per-user cap counts one owner's unfinished tasks of this service.
CREATE INDEX IF NOT EXISTS tasks_unfinished_owner_idx
    ON tasks (owner_id) WHERE status IN ('fresh', 'started') AND owner_id IS NOT NULL;
DROP INDEX IF EXISTS tasks_unfinished_by_owner_idx;

-- A user's create under the cap on unfinished tasks (MAX_PENDING_TASKS_PER_USER) as one statement,
-- so the API sends it as one query in autocommit mode: one round trip, no transaction to open and
-- commit around it. The advisory lock orders one user's creates and retries; the INSERT is a new
-- statement of a VOLATILE function, so under READ COMMITTED it takes a new snapshot once the lock
-- is held and counts every task committed before: two parallel creates never both pass the cap.
-- The lock is held until the calling transaction ends (at once, in autocommit). Only this
-- service's unfinished tasks count (BookLogr's own, some stuck in `started` for ever, never do),
-- and the count stops at the cap. No row: over the cap.
CREATE OR REPLACE FUNCTION booklogr_tasks_pending_below(owner bigint, max_pending bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT count(*) < max_pending FROM (
        SELECT 1 FROM tasks
         WHERE owner_id = owner AND status IN ('fresh', 'started')
         LIMIT max_pending) AS pending
$$;

CREATE OR REPLACE FUNCTION booklogr_tasks_create_under_cap(
    new_type text, new_data text, new_owner integer, max_pending bigint
) RETURNS SETOF tasks
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'626B6C72'::integer, new_owner);
    RETURN QUERY
        INSERT INTO tasks (type, data, created_by)
        SELECT new_type, new_data, new_owner
         WHERE booklogr_tasks_pending_below(new_owner, max_pending)
        RETURNING *;
END
$$;

-- A retry under the same cap and the same lock as a create: failure → fresh, error, attempts and
-- result cleared, only while the owner has room under the cap, in one statement. No row: nothing
-- changed (absent, not failed, not this service's, or over the cap; the caller asks which).
CREATE OR REPLACE FUNCTION booklogr_tasks_retry_under_cap(
    retried_id bigint, retried_owner integer, served text[], max_pending bigint
) RETURNS SETOF tasks
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'626B6C72'::integer, retried_owner);
    IF NOT booklogr_tasks_pending_below(retried_owner, max_pending) THEN
        RETURN;
    END IF;
    RETURN QUERY
        WITH retried AS (
            UPDATE tasks
               SET status = 'fresh', error = NULL, worker = NULL, attempts = 0,
                   run_after = NULL, updated_on = now()
             WHERE id = retried_id AND created_by = retried_owner AND status = 'failure'
               AND owner_id IS NOT NULL AND type = ANY(served)
            RETURNING *
        ), cleared AS (
            DELETE FROM task_results r USING retried WHERE r.task_id = retried.id
        )
        SELECT * FROM retried;
END
$$;

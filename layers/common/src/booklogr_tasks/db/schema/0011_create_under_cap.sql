-- A user's create under the cap on unfinished tasks (MAX_PENDING_TASKS_PER_USER) as one statement,
-- so the API sends it as one query in autocommit mode: one round trip, no transaction to open and
-- commit around it (as two pipelined statements it cost the API twice the CPU of a plain INSERT).
-- The advisory lock orders one user's creates; the INSERT is a new statement of a VOLATILE
-- function, so under READ COMMITTED it takes a new snapshot once the lock is held and counts every
-- task committed before: two parallel creates never both pass the cap. The lock is held until the
-- calling transaction ends (at once, in autocommit). The count stops at the cap: its cost never
-- grows with a backlog (index tasks_unfinished_by_owner_idx, 0010). No row: over the cap.
CREATE OR REPLACE FUNCTION booklogr_tasks_create_under_cap(
    new_type text, new_data text, new_owner integer, max_pending bigint
) RETURNS SETOF tasks
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'626B6C72'::integer, new_owner);
    RETURN QUERY
        INSERT INTO tasks (type, data, created_by)
        SELECT new_type, new_data, new_owner
         WHERE (SELECT count(*) FROM (
                    SELECT 1 FROM tasks
                     WHERE created_by = new_owner AND status IN ('fresh', 'started')
                     LIMIT max_pending) AS pending) < max_pending
        RETURNING *;
END
$$;

-- Whether a task's owner is one of BookLogr's users. Where BookLogr's `users` table exists, a
-- task for an id it does not have fails (an export would be empty, an import would fill a
-- library nobody can open); without that table (development, tests) every owner counts. The
-- look-up is dynamic: the function must exist before, and without, BookLogr's tables.
CREATE OR REPLACE FUNCTION booklogr_tasks_owner_is_user(owner integer) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found boolean;
BEGIN
    IF to_regclass('users') IS NULL THEN
        RETURN true;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)' INTO found USING owner;
    RETURN found;
END $$;

-- A task given back after a lost database connection, a statement timeout or a lost worker is
-- not claimed again before `run_after` (exponential backoff), so a task that fails the same way
-- every time does not spin. NULL: claimable at once.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS run_after timestamptz NULL;

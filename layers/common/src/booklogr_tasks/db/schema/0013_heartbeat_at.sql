-- The lease clock of a started task, in a column of its own: claims set it, heartbeats refresh
-- it and the reaper reads it, while `updated_on` keeps its meaning for users (the time of the
-- task's last change: its claim, progress and finish). A started task without one (claimed
-- before this column existed) is judged by its `updated_on`, the clock it had then.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz NULL;

CREATE INDEX IF NOT EXISTS tasks_lease_idx
    ON tasks ((coalesce(heartbeat_at, updated_on))) WHERE status = 'started';
DROP INDEX IF EXISTS tasks_started_idx;

-- The per-user cap on unfinished tasks (MAX_PENDING_TASKS_PER_USER) counts a user's fresh and
-- started tasks on every create: this index keeps that count small however many finished tasks
-- the user has.
CREATE INDEX IF NOT EXISTS tasks_unfinished_by_owner_idx
    ON tasks (created_by) WHERE status IN ('fresh', 'started');

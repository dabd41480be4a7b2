"""Every SQL statement of the task lifecycle, named, in one place.

Rules every statement here keeps:
- a worker only ever changes a task it owns, and only in the attempt that claimed it:
  `worker = %(worker)s AND attempts = %(attempt)s AND status = 'started'` (each claim adds one
  to `attempts`, so the pair names one claim even when a process claims the same task twice);
- claims are single statements guarded by `status = 'fresh'`, so racing workers cannot both win;
- a listener claims, sweeps, reaps and expires only rows that are this service's to run
  (`_OURS`): those the insert trigger gave an `owner_id` (schema 0012: data that is a JSON
  object naming a positive integer owner). BookLogr's API creates and runs some tasks itself
  (a Python repr or `{}` as data, a NULL worker, `attempts` never counted) and has types this
  service does not serve;
- nothing is claimed before its `run_after` (the backoff of a requeued task);
- the `tasks_announce` trigger sends `NOTIFY task_created` whenever a row becomes fresh.
"""

from __future__ import annotations

from typing import LiteralString

TASK_COLUMNS = (
    "id, type, data, status, worker, created_at, updated_on, created_by, error, attempts, run_after"
)
_T_COLUMNS = ", ".join(f"t.{c.strip()}" for c in TASK_COLUMNS.split(","))

INSERT_TASK: LiteralString = f"""
INSERT INTO tasks (type, data, created_by) VALUES (%(type)s, %(data)s, %(created_by)s)
RETURNING {TASK_COLUMNS}"""

# What the status and list endpoints show: every column but `data`, which they never show.
_SHOWN_COLUMNS = ", ".join(c for c in _T_COLUMNS.split(", ") if c != "t.data")
_REPORT: LiteralString = f"""
SELECT {_SHOWN_COLUMNS}, r.progress, r.result
  FROM tasks t LEFT JOIN task_results r ON r.task_id = t.id"""

GET_TASK: LiteralString = _REPORT + " WHERE t.id = %(id)s"

GET_OWN_TASK: LiteralString = _REPORT + " WHERE t.id = %(id)s AND t.created_by = %(owner)s"

# Keyset pagination: `before` is the smallest id of the previous page.
LIST_OWN_TASKS: LiteralString = (
    _REPORT
    + """
 WHERE t.created_by = %(owner)s AND (%(before)s::bigint IS NULL OR t.id < %(before)s)
 ORDER BY t.id DESC LIMIT %(limit)s"""
)

# A row is this service's to run when the insert trigger found an owner in its data (every
# payload of this service names one; BookLogr stores a Python repr such as `{}`) and its type is
# one the caller serves.
_OURS: LiteralString = "type = ANY(%(types)s) AND owner_id IS NOT NULL"

# Only a task this service runs: a failed task of BookLogr's own, made fresh, would wait forever
# (BookLogr runs its tasks in a thread when it creates them, and no listener claims them). Under
# the per-user cap, like a create (schema 0012 holds the function); no row when nothing changed.
RETRY_TASK_UNDER_CAP: LiteralString = f"""
SELECT {TASK_COLUMNS}
  FROM booklogr_tasks_retry_under_cap(%(id)s, %(owner)s::integer, %(types)s, %(cap)s::bigint)"""

# Why a retry changed nothing: the task's status, and whether it is one this service runs.
RETRY_REFUSED: LiteralString = f"""
SELECT status, ({_OURS}) AS ours FROM tasks WHERE id = %(id)s AND created_by = %(owner)s"""

# Claimable now: fresh, ours, and past any backoff.
_CLAIMABLE: LiteralString = (
    "status = 'fresh' AND (run_after IS NULL OR run_after <= now()) AND " + _OURS
)

# Started by one of this service's claims: BookLogr runs its own tasks with a NULL worker and
# never counts `attempts` (this service's column).
_CLAIMED_BY_US: LiteralString = "worker IS NOT NULL AND attempts > 0 AND " + _OURS

# The claim starts the lease clock (heartbeat_at, schema 0013) and is a change users see
# (updated_on).
_CLAIM_SET = """
   SET status = 'started', worker = %(worker)s, updated_on = now(), heartbeat_at = now(),
       attempts = attempts + 1, error = NULL, run_after = NULL"""

CLAIM_BY_ID: LiteralString = f"""
UPDATE tasks {_CLAIM_SET}
 WHERE id = %(id)s AND {_CLAIMABLE}
RETURNING {TASK_COLUMNS}"""

# Oldest first; SKIP LOCKED lets racing workers take disjoint batches instead of queueing on
# each other's row locks. The picked ids are MATERIALIZED: as a plain subquery the planner may
# re-run it once per outer row, which claims far more than `limit` tasks.
CLAIM_BATCH: LiteralString = f"""
WITH picked AS MATERIALIZED (
    SELECT id FROM tasks
     WHERE {_CLAIMABLE}
     ORDER BY id LIMIT %(limit)s
     FOR UPDATE SKIP LOCKED
)
UPDATE tasks t {_CLAIM_SET}
  FROM picked WHERE t.id = picked.id
RETURNING {_T_COLUMNS}"""

# Server settings of the listener's claims connection (CLAIM_BATCH, SWEEP_FRESH). Right after
# a burst of new tasks the planner's statistics still count few fresh ones and estimate that
# one row passes the claimable filter; it then prefers a bitmap scan that reads and sorts every
# fresh task to return the oldest few, so each claim cost grew with the backlog (2.5-6 ms per
# claim of 10 with 20,000 fresh, vs 0.06 ms walking tasks_fresh_idx in id order, which stops
# after `limit`). Without bitmap scans the ordered index walk is the plan.
CLAIMS_SESSION: dict[str, str] = {"enable_bitmapscan": "off"}

# Fresh tasks of some types, for a listener that hands them to invocations it does not claim for.
SWEEP_FRESH: LiteralString = f"""
SELECT id, type FROM tasks
 WHERE {_CLAIMABLE}
 ORDER BY id LIMIT %(limit)s"""

# Each running attempt of a process, as (task id, attempt) pairs: `unnest(ids, attempts)`.
_ATTEMPTS: LiteralString = "unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS a(id, attempt)"

# One statement beats every task a process runs and stores the progress that changed since the
# last beat; it returns the ids this worker's attempts still own. The beat moves the lease clock
# (heartbeat_at); only new progress is a change users see (updated_on). It never waits for a
# row lock: a row that is locked is skipped (not beaten) but still counted as owned when its
# committed state says so. The lock is then held by this worker's own success transaction (an
# import's bulk load, an export's publish), or for a moment by a reaper that only takes rows
# whose lease has already expired; either way the next beat sees the outcome. Waiting instead
# would stall every other task's lease behind one long transaction.
HEARTBEAT: LiteralString = f"""
WITH owned AS (
    SELECT t.id FROM tasks t JOIN {_ATTEMPTS} ON a.id = t.id AND a.attempt = t.attempts
     WHERE t.worker = %(worker)s AND t.status = 'started' AND t.owner_id IS NOT NULL
), beat AS (
    UPDATE tasks
       SET heartbeat_at = now(),
           updated_on = CASE WHEN id = ANY(%(progressed)s::bigint[]) THEN now() ELSE updated_on END
     WHERE id IN (SELECT id FROM tasks
                   WHERE id IN (SELECT id FROM owned)
                     AND worker = %(worker)s AND status = 'started'
                     FOR NO KEY UPDATE SKIP LOCKED)
    RETURNING id
), progressed AS (
    INSERT INTO task_results (task_id, progress)
    SELECT p.task_id, p.progress
      FROM jsonb_to_recordset(%(progress)s::jsonb) AS p(task_id bigint, progress jsonb)
      JOIN beat ON beat.id = p.task_id
    ON CONFLICT (task_id) DO UPDATE SET progress = EXCLUDED.progress
)
SELECT id FROM owned"""

# `attempt` NULL matches any attempt of the worker: for callers that claimed with claim_task
# themselves and hold no other attempt (tests, tools); workers always name their attempt.
_END: LiteralString = """
 WHERE id = %(id)s AND worker = %(worker)s AND status = 'started' AND owner_id IS NOT NULL
   AND attempts = coalesce(%(attempt)s::integer, attempts)
RETURNING id"""

# Marks many tasks a success in one statement (a worker finishing quick tasks commits them as a
# group) and stores the results given for them; returns the ids this worker still owned.
FINISH_TASKS: LiteralString = f"""
WITH done AS (
    UPDATE tasks t SET status = 'success', updated_on = now()
      FROM {_ATTEMPTS}
     WHERE t.id = a.id AND t.attempts = coalesce(a.attempt, t.attempts)
       AND t.worker = %(worker)s AND t.status = 'started' AND t.owner_id IS NOT NULL
    RETURNING t.id
), stored AS (
    INSERT INTO task_results (task_id, result, progress)
    SELECT r.task_id, r.result, NULL
      FROM jsonb_to_recordset(%(results)s::jsonb) AS r(task_id bigint, result jsonb)
      JOIN done ON done.id = r.task_id
    ON CONFLICT (task_id) DO UPDATE SET result = EXCLUDED.result, progress = NULL
)
SELECT id FROM done"""

# The attempts of a group commit that still own their task, locked until the group commits so
# that nothing takes them away between the publish steps and the finish.
LOCK_OWNED: LiteralString = f"""
SELECT t.id, t.attempts FROM tasks t JOIN {_ATTEMPTS} ON a.id = t.id AND a.attempt = t.attempts
 WHERE t.worker = %(worker)s AND t.status = 'started' AND t.owner_id IS NOT NULL
   FOR UPDATE OF t"""

FAIL_TASK: LiteralString = (
    "UPDATE tasks SET status = 'failure', error = %(error)s, updated_on = now()" + _END
)

# Given back on shutdown: the claim did not run the task, so it does not count as an attempt.
RELEASE_TASK: LiteralString = (
    """
UPDATE tasks SET status = 'fresh', worker = NULL, updated_on = now(), run_after = NULL,
                 attempts = greatest(attempts - 1, 0)"""
    + _END
)

STORE_RESULT: LiteralString = """
INSERT INTO task_results (task_id, result, progress) VALUES (%(id)s, %(result)s, NULL)
ON CONFLICT (task_id) DO UPDATE SET result = EXCLUDED.result, progress = NULL"""

# When a task given back may run again: exponential in the attempts so far, capped.
_BACKOFF: LiteralString = """now() + make_interval(secs => least(%(backoff_cap)s,
    %(backoff_base)s * power(2, greatest(attempts - 1, 0))))"""
_BACKOFF_T: LiteralString = """now() + make_interval(secs => least(%(backoff_cap)s,
    %(backoff_base)s * power(2, greatest(t.attempts - 1, 0))))"""

# Started tasks whose heartbeat is older than the lease belong to a lost worker (a task claimed
# before heartbeat_at existed is judged by updated_on, its lease clock then; index
# tasks_lease_idx). Several listeners may reap at once: SKIP LOCKED gives each lost task to one
# of them (and skips a row whose success transaction is still running). Only this service's
# claims of the types this listener serves are reaped: BookLogr marks its own tasks started
# with a NULL worker.
REAP_LOST: LiteralString = f"""
WITH lost AS (
    SELECT id FROM tasks
     WHERE status = 'started'
       AND coalesce(heartbeat_at, updated_on) < now() - make_interval(secs => %(lease)s)
       AND {_CLAIMED_BY_US}
     FOR UPDATE SKIP LOCKED
)
UPDATE tasks t
   SET status = CASE WHEN t.attempts < %(max_attempts)s THEN 'fresh' ELSE 'failure' END,
       error = CASE WHEN t.attempts < %(max_attempts)s THEN NULL
                    ELSE format('The worker running this task stopped responding (worker lost '
                                '%%s times); gave up after %%s attempts. Retry the task to run '
                                'it again.', t.attempts, %(max_attempts)s) END,
       worker = CASE WHEN t.attempts < %(max_attempts)s THEN NULL ELSE t.worker END,
       run_after = CASE WHEN t.attempts < %(max_attempts)s THEN {_BACKOFF_T} END,
       updated_on = now()
  FROM lost WHERE t.id = lost.id
RETURNING t.id, t.status"""

QUEUE_COUNTS: LiteralString = """
SELECT type, status, count(*) AS n, min(created_at) AS oldest
  FROM tasks GROUP BY type, status ORDER BY type, status"""

QUEUE_OLDEST: LiteralString = f"""
SELECT {TASK_COLUMNS} FROM tasks
 WHERE status = %(status)s ORDER BY id LIMIT %(limit)s"""

# --- exports: one table, a row per finished file, `format` telling the formats apart ----------

# Export ids are reserved before the file is written so its name can carry the id; the row
# itself is only inserted, with that id, in the transaction that marks the task a success.
# An export's first statement: its id reserved and the owner's books counted (the progress
# total), before its rows are read (in the same snapshot where the export reads with more than
# one statement: tasks.export_reads; nextval is why that transaction is not READ ONLY).
START_EXPORT: LiteralString = """
SELECT nextval(pg_get_serial_sequence('exports', 'id')) AS id,
       (SELECT count(*) FROM books WHERE owner_id = %(owner)s) AS books,
       booklogr_tasks_owner_is_user(%(owner)s) AS owner_is_user"""

# An export's row and its line in BookLogr's `files`, in one statement (it runs once per export,
# in the group commit).
INSERT_EXPORT: LiteralString = """
WITH export AS (
    INSERT INTO exports (format, id, filename, owner_id, task_id)
    VALUES (%(format)s, %(id)s, %(filename)s, %(owner)s, %(task_id)s)
)
INSERT INTO files (filename, owner_id, created_at)
VALUES (%(filename)s, %(owner)s, now() AT TIME ZONE 'UTC')"""

_SELECT_EXPORT: LiteralString = """
SELECT id, format, filename, owner_id, created_at, task_id FROM exports
 WHERE owner_id = %(owner)s"""

GET_OWN_EXPORT: LiteralString = _SELECT_EXPORT + " AND format = %(format)s AND id = %(id)s"

# Every format's exports of one owner, newest first.
LIST_OWN_EXPORTS: LiteralString = (
    _SELECT_EXPORT + " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
)

# The owner's export (of any format) stored under this key, if this service made it.
GET_OWN_EXPORT_BY_FILENAME: LiteralString = _SELECT_EXPORT + " AND filename = %(filename)s LIMIT 1"

# A job whose database connection dropped, or whose statement timed out, gives its task back at
# once (instead of waiting for the lease) with a backoff, counting the attempt, so a task that
# fails that way every time ends instead of spinning.
REQUEUE_AFTER_ERROR: LiteralString = f"""
UPDATE tasks
   SET status = CASE WHEN attempts < %(max_attempts)s THEN 'fresh' ELSE 'failure' END,
       error = CASE WHEN attempts < %(max_attempts)s THEN NULL ELSE %(error)s END,
       worker = CASE WHEN attempts < %(max_attempts)s THEN NULL ELSE worker END,
       run_after = CASE WHEN attempts < %(max_attempts)s THEN {_BACKOFF} END,
       updated_on = now()
 WHERE id = %(id)s AND worker = %(worker)s AND status = 'started' AND owner_id IS NOT NULL
   AND attempts = coalesce(%(attempt)s::integer, attempts)
RETURNING status, run_after"""

# --- retention ----------------------------------------------------------------------------------

# Only one listener at a time does retention; the others skip it (transaction-scoped lock).
TRY_RETENTION_LOCK: LiteralString = "SELECT pg_try_advisory_xact_lock(%(lock)s) AS locked"

# Only tasks this service ran: BookLogr's own finished tasks are BookLogr's to keep or delete.
DELETE_OLD_TASKS: LiteralString = f"""
DELETE FROM tasks WHERE id IN (
    SELECT id FROM tasks
     WHERE status IN ('success', 'failure')
       AND updated_on < now() - make_interval(secs => %(age)s)
       AND {_CLAIMED_BY_US}
     LIMIT %(limit)s)
RETURNING id, data, created_by"""

# Failed tasks this service ran that failed between `age` and `age + window` ago: a failed
# import among them still holds its upload (kept for a retry), which retention now deletes.
# Each retention run looks at this window (wider than the time between runs), so every failure
# is seen a few times, not on every run for as long as the task is kept; the task's own
# retention (DELETE_OLD_TASKS) deletes what a listener that was down longer missed.
FAILED_UPLOADS_DUE: LiteralString = f"""
SELECT data, created_by FROM tasks
 WHERE status = 'failure'
   AND updated_on < now() - make_interval(secs => %(age)s)
   AND updated_on >= now() - make_interval(secs => %(age)s + %(window)s)
   AND {_CLAIMED_BY_US}
 ORDER BY updated_on LIMIT %(limit)s"""

# Keep each owner's newest few exports of a format; delete the older ones past the age limit,
# and their rows in BookLogr's `files` list with them. Exports a schedule made are its own to
# keep (its `keep`, db/schedules.py): retention neither counts nor deletes them.
EXPIRE_EXPORTS: LiteralString = """
WITH ranked AS (
    SELECT format, id, created_at,
           row_number() OVER (PARTITION BY owner_id, format
                              ORDER BY created_at DESC, id DESC) AS rank
      FROM exports x
     WHERE NOT EXISTS (SELECT 1 FROM scheduled_exports s WHERE s.filename = x.filename)
), expired AS (
    DELETE FROM exports e USING ranked
     WHERE e.format = ranked.format AND e.id = ranked.id AND ranked.rank > %(keep)s
       AND ranked.created_at < now() - make_interval(secs => %(age)s)
    RETURNING e.filename, e.owner_id
), unlisted AS (
    DELETE FROM files f USING expired
     WHERE f.filename = expired.filename AND f.owner_id = expired.owner_id
)
SELECT filename FROM expired"""


# --- BookLogr's files (its web app's list of exports) and revoked tokens -------------------------

# BookLogr stores naive UTC timestamps and lists files newest first (its web app appends "Z").
LIST_OWN_FILES: LiteralString = """
SELECT id, filename, created_at FROM files
 WHERE owner_id = %(owner)s AND filename IS NOT NULL
 ORDER BY created_at DESC NULLS LAST, id DESC"""

GET_OWN_FILE: LiteralString = """
SELECT id, filename, created_at FROM files
 WHERE owner_id = %(owner)s AND filename = %(filename)s
 ORDER BY id LIMIT 1"""


TABLE_EXISTS: LiteralString = "SELECT to_regclass(%(name)s) IS NOT NULL AS present"

# Whether the owner is one of BookLogr's users (true where BookLogr's `users` table is absent).
OWNER_IS_USER: LiteralString = "SELECT booklogr_tasks_owner_is_user(%(owner)s) AS known"

TOKEN_REVOKED: LiteralString = """
SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = %(jti)s) AS revoked"""


# --- the per-user cap on unfinished tasks (POST /v1/tasks) -------------------------------------

# The cap counts only this service's unfinished tasks (owner_id set by the insert trigger):
# BookLogr's own, some of which stay `started` for ever, never lock a user out.
# One statement (schema 0012 holds the function: the advisory lock that orders one user's creates,
# and the INSERT that counts their unfinished tasks under it); no row when the user is at the cap.
INSERT_TASK_UNDER_CAP: LiteralString = f"""
SELECT {TASK_COLUMNS}
  FROM booklogr_tasks_create_under_cap(%(type)s, %(data)s, %(owner)s::integer, %(cap)s::bigint)"""

# Whether a user has room under the cap, asked before an upload's body is read; the create
# itself (INSERT_TASK_UNDER_CAP) decides for certain. The count stops at the cap.
HAS_ROOM_UNDER_CAP: LiteralString = """
SELECT booklogr_tasks_pending_below(%(owner)s, %(cap)s) AS room"""

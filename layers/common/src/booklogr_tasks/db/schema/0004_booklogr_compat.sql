-- On a BookLogr database, BookLogr's own task list still reads `tasks.created_on`, which BookLogr
-- fills in Python, not in SQL. Tasks created by other programs get it from a default, so both
-- views of a task show when it was created. Nothing happens where the column does not exist.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'tasks'
                 AND column_name = 'created_on' AND column_default IS NULL
                 AND data_type = 'timestamp without time zone') THEN
        ALTER TABLE tasks ALTER COLUMN created_on SET DEFAULT (now() AT TIME ZONE 'UTC');
    END IF;
END $$;

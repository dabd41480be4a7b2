-- BookLogr's reading history, created only where BookLogr has not created it (development, tests).
-- Imports record a finished session for a book read on a known date; the HTML report counts
-- books and pages read per year by their sessions' end dates.
CREATE TABLE IF NOT EXISTS reading_sessions (
    id          serial PRIMARY KEY,
    book_id     integer NOT NULL REFERENCES books (id),
    status      varchar NOT NULL,
    start_date  timestamp NOT NULL,
    end_date    timestamp NULL
);

CREATE INDEX IF NOT EXISTS reading_sessions_book_id_idx ON reading_sessions (book_id);

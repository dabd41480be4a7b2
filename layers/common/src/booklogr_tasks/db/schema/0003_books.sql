-- BookLogr's own tables, created only where BookLogr has not created them (development, tests).
-- Column names and types follow BookLogr's models.
CREATE TABLE IF NOT EXISTS books (
    id              serial PRIMARY KEY,
    title           varchar,
    subtitle        varchar,
    isbn            varchar,
    description     varchar,
    author          varchar,
    reading_status  varchar,
    current_page    integer,
    total_pages     integer,
    rating          numeric(3, 2),
    owner_id        integer,
    created_on      timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE IF NOT EXISTS notes (
    id          serial PRIMARY KEY,
    book_id     integer REFERENCES books (id),
    content     varchar NOT NULL,
    quote_page  integer,
    visibility  varchar DEFAULT 'hidden',
    created_on  timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);

-- Exports read a user's books and their notes in one pass; imports look duplicates up by ISBN.
CREATE INDEX IF NOT EXISTS books_owner_id_idx ON books (owner_id, id);
CREATE INDEX IF NOT EXISTS notes_book_id_idx ON notes (book_id);

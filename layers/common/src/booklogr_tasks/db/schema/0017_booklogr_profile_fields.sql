-- BookLogr's profile, settings and custom fields, created only where BookLogr has not created
-- them (development, tests): backups carry them and restores fill them in. Column names and
-- types follow BookLogr's models; in a real deployment BookLogr's API migrates first and this
-- leaves its tables as they are.
CREATE TABLE IF NOT EXISTS profiles (
    id               serial PRIMARY KEY,
    display_name     varchar UNIQUE,
    visibility       varchar DEFAULT 'hidden',
    owner_id         integer UNIQUE,
    profile_picture  varchar
);

CREATE TABLE IF NOT EXISTS user_settings (
    id                     serial PRIMARY KEY,
    owner_id               integer UNIQUE,
    send_book_events       boolean DEFAULT false,
    mastodon_url           varchar,
    mastodon_access_token  varchar,
    created_at             timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_on             timestamp
);

CREATE TABLE IF NOT EXISTS fields (
    id          serial PRIMARY KEY,
    owner_id    integer,
    name        varchar NOT NULL,
    field_type  varchar,
    show_order  integer,
    options     text,
    created_at  timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE IF NOT EXISTS field_values (
    id        serial PRIMARY KEY,
    book_id   integer REFERENCES books (id) ON DELETE CASCADE,
    field_id  integer REFERENCES fields (id),
    value     varchar NOT NULL
);

-- A backup reads each book's values by book, and a user's fields by owner; BookLogr's models
-- declare no index on either.
CREATE INDEX IF NOT EXISTS booklogr_tasks_field_values_book_idx ON field_values (book_id);
CREATE INDEX IF NOT EXISTS booklogr_tasks_fields_owner_idx ON fields (owner_id);

"""backup_export: everything the owner has in BookLogr's tables, as one versioned JSON document
(jobs/backup_document.py says what it holds).

PostgreSQL builds each row's JSON text; a named (server-side) cursor hands the books over in
batches, each with its notes, reading sessions and field values, so memory stays flat however
large the library. Everything is read in the export's one snapshot (tasks.export_reads).
"""

from __future__ import annotations

import json

from booklogr_tasks.db.pool import Conn
from booklogr_tasks.jobs.backup_document import FORMAT, VERSION, without_secrets
from booklogr_tasks.jobs.base import JobContext
from booklogr_tasks.jobs.exports.base import register_export
from booklogr_tasks.jobs.exports.json import write_books
from booklogr_tasks.storage import PendingExport

HEAD = f"""
SELECT now() AS exported_at,
       (SELECT to_jsonb(p) FROM profiles p WHERE p.owner_id = %(owner)s
         ORDER BY p.id LIMIT 1)::text AS profile,
       (SELECT {without_secrets("to_jsonb(s)")} FROM user_settings s
         WHERE s.owner_id = %(owner)s ORDER BY s.id LIMIT 1)::text AS settings,
       (SELECT coalesce(jsonb_agg(to_jsonb(f) ORDER BY f.id), '[]'::jsonb)
          FROM fields f WHERE f.owner_id = %(owner)s)::text AS fields"""

BOOKS = """
SELECT (to_jsonb(b) || jsonb_build_object(
           'notes', coalesce((SELECT jsonb_agg(to_jsonb(n) ORDER BY n.id)
                                FROM notes n WHERE n.book_id = b.id), '[]'::jsonb),
           'reading_sessions', coalesce((SELECT jsonb_agg(to_jsonb(s) ORDER BY s.id)
                                           FROM reading_sessions s WHERE s.book_id = b.id),
                                        '[]'::jsonb),
           'field_values', coalesce((SELECT jsonb_object_agg(f.name, v.value ORDER BY v.id)
                                       FROM field_values v JOIN fields f ON f.id = v.field_id
                                      WHERE v.book_id = b.id), '{}'::jsonb)))::text AS book
  FROM books b WHERE b.owner_id = %(owner)s ORDER BY b.id"""


def write_backup(conn: Conn, ctx: JobContext, owner_id: int, sink: PendingExport) -> int:
    head = conn.execute(HEAD, {"owner": owner_id}).fetchone()
    assert head is not None
    sink.write(
        (
            f'{{"format": {json.dumps(FORMAT)}, "version": {VERSION},\n'
            f' "exported_at": {json.dumps(head["exported_at"].isoformat())},'
            f' "owner_id": {owner_id},\n'
            f' "profile": {head["profile"] or "null"},\n'
            f' "settings": {head["settings"] or "null"},\n'
            f' "fields": {head["fields"]},\n'
            ' "books": ['
        ).encode()
    )
    rows = write_books(conn, ctx, owner_id, sink, BOOKS)
    sink.write(b"\n]}\n")
    return rows


SPEC = register_export(
    "backup_export",
    "backup",
    write_backup,
    "Everything you have in BookLogr as one restorable JSON document: profile, settings "
    "(without secrets), custom fields, and every book with its notes, reading sessions and "
    "field values.",
    content_type="application/json",
    extension="json",
)

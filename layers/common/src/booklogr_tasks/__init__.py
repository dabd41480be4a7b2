"""Background tasks for BookLogr: a task table in PostgreSQL, listeners that run the jobs,
and an HTTP API."""

__version__ = "0.1.0"

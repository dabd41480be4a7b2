"""`booklogr-tasks`, the command line: the production commands (migrate, listen, api, queue)
and the entry to the developer's ones in devtools (dev, token)."""

from booklogr_tasks.cli.main import main

__all__ = ["main"]

"""`python -m booklogr_tasks.cli`: the same as the `booklogr-tasks` console script."""

import sys

from booklogr_tasks.cli.main import main

sys.exit(main())

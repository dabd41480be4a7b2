"""The Chalice app of functions/, loaded for the production server (http/asgi.py serves it).

Nothing here knows a route: the route table is the app's own (`app.routes`), so every route added
to functions/app.py is served without a change here.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from chalice.local import LocalChalice

from booklogr_tasks.core.errors import SettingsError
from booklogr_tasks.core.settings import load_settings

STAGE = "local"
# Set it when the package is installed somewhere the repository's functions/ is not beside it.
FUNCTIONS_DIR_ENV = "BOOKLOGR_TASKS_FUNCTIONS_DIR"
_MODULE_NAME = "booklogr_tasks_functions_app"


def functions_dir() -> Path:
    """The Chalice project: $BOOKLOGR_TASKS_FUNCTIONS_DIR, the repository's, or ./functions."""
    given = load_settings().booklogr_tasks_functions_dir
    candidates = (
        [Path(given)]
        if given
        else [Path(__file__).resolve().parents[5] / "functions", Path.cwd() / "functions"]
    )
    for folder in candidates:
        if (folder / "app.py").is_file() and (folder / ".chalice" / "config.json").is_file():
            return folder.resolve()
    raise SettingsError(
        f"cannot find the Chalice project (app.py and .chalice/config.json) in "
        f"{', '.join(map(str, candidates))}; set {FUNCTIONS_DIR_ENV}"
    )


def stage_environment(project: Path, stage: str = STAGE) -> dict[str, str]:
    """The environment variables the Chalice config gives the stage (as `chalice local` does)."""
    config = json.loads((project / ".chalice" / "config.json").read_text("utf-8"))
    values = dict(config.get("environment_variables", {}))
    values.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return {str(k): str(v) for k, v in values.items()}


def load_app(project: Path) -> Any:
    """functions/app.py's `app`, serving one request per handler thread. The stage's variables
    fill in what the environment does not set, before the app's imports read them."""
    for key, value in stage_environment(project).items():
        os.environ.setdefault(key, value)
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, project / "app.py")
    if spec is None or spec.loader is None:
        raise SettingsError(f"cannot load {project / 'app.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    # Chalice keeps the request being handled in one attribute of the app: enough on Lambda
    # (one request per process at a time), but handler threads would read each other's
    # requests. `chalice local`'s own app class keeps it per thread.
    app.__class__ = LocalChalice
    return app


__all__ = ["STAGE", "functions_dir", "load_app", "stage_environment"]

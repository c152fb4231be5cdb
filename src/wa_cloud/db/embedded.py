"""An embedded PostgreSQL (pgserver ships the binaries) for `wa-cloud dev` and the tests."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def server(pgdata: Path, *, keep_running: bool = True) -> Any:
    """Start (or reuse) the server whose data lives in `pgdata`; it listens on a Unix socket.

    With `keep_running` the server outlives this process, so `wa-cloud dev` keeps its data and
    starts in a blink the next time; the tests stop and delete theirs.
    """
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    # pgserver asks platformdirs for a private runtime dir at import; without one it warns.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = pgdata.parent / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver  # imported here: production with DATABASE_URL never needs it

    return pgserver.get_server(pgdata, cleanup_mode=None if keep_running else "delete")


def start(data_dir: Path) -> str:
    """The URL of the embedded server under `data_dir`, started if needed."""
    url = server(data_dir / "pg").get_uri()
    logger.info("embedded postgresql ready", extra={"pgdata": str((data_dir / "pg").resolve())})
    return url

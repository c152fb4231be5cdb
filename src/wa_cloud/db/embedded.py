"""An embedded PostgreSQL (pgserver ships the binaries) for `wa-cloud dev` and the tests."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def start(data_dir: Path) -> str:
    """Start (or reuse) the server whose data lives in `data_dir/pg`; return its URL.

    The server keeps running after this process exits so data and start-up time are kept
    between runs; it listens on a Unix socket only.
    """
    import pgserver  # imported here: production with DATABASE_URL never needs it

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve()))
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    logger.info("embedded postgresql ready", extra={"pgdata": str(pgdata)})
    return server.get_uri()

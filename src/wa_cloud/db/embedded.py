"""An embedded PostgreSQL (pgserver ships the binaries) for `wa-cloud dev` and the tests."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wa_cloud.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)


def server(pgdata: Path, *, keep_running: bool = True) -> Any:
    """Start (or reuse) the server whose data lives in `pgdata`; it listens on a Unix socket.

    With `keep_running` the server outlives this process and the next command finds it up;
    without, it is stopped and its data deleted when this process ends (the tests, the benches).
    `running` is the third way: stopped when its block ends, data kept.
    """
    return _get_server(pgdata, cleanup_mode=None if keep_running else "delete")


def _get_server(pgdata: Path, *, cleanup_mode: str | None) -> Any:
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    # pgserver asks platformdirs for a private runtime dir at import; without one it warns.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = pgdata.parent / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    # Imported here: production with DATABASE_URL never needs it.
    from pgserver.postgres_server import get_server

    # At INFO pgserver logs every command line with initdb's and pg_ctl's whole output: some 50
    # lines on a newcomer's first start, before the banner. A failure still comes at ERROR.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return get_server(pgdata, cleanup_mode=cleanup_mode)


def start(data_dir: Path) -> str:
    """The URL of the embedded server under `data_dir`, started if needed."""
    url: str = server(data_dir / "pg").get_uri()
    logger.info("embedded postgresql ready", extra={"pgdata": str((data_dir / "pg").resolve())})
    return url


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[str]:
    """The URL of the embedded server under `data_dir` for the block; when the block ends, by
    return, exception or KeyboardInterrupt, the server stops (its data stays).

    It keeps running if another live process still holds it (`wa-cloud serve` on the same data).
    Call from the main thread: Ctrl-C and SIGTERM wait while the server starts.
    """
    pgdata = (data_dir / "pg").resolve()
    with _signals_held() as held:
        _start_apart(pgdata)
        handle = _get_server(pgdata, cleanup_mode="stop")  # finds it up: runs no command
    try:
        for sig in held:
            signal.raise_signal(sig)  # now the `finally` below stops what just started
        logger.info("embedded postgresql ready", extra={"pgdata": str(pgdata)})
        yield handle.get_uri()
    finally:
        _release(handle)
        logger.info("embedded postgresql released", extra={"pgdata": str(pgdata)})


def _start_apart(pgdata: Path) -> None:
    """Start the server from a helper process in a session of its own, which leaves it running.

    A terminal's Ctrl-C goes to its whole foreground process group: initdb or pg_ctl would die
    of it half-way, and the start fail with pgserver's dump of their output and a traceback.
    Apart, the start completes and the held Ctrl-C then stops the server like any other.
    """
    code = (
        "import pathlib, sys; from wa_cloud.db import embedded; "
        "embedded.server(pathlib.Path(sys.argv[1]))"
    )
    try:
        subprocess.run(
            [sys.executable, "-c", code, str(pgdata)],
            check=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except subprocess.CalledProcessError as exc:
        raise DatabaseUnavailable("the embedded PostgreSQL did not start (why is above)") from exc


@contextlib.contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM noted, not acted on, during the block: acted on half-way through a
    start, they would leave a server that no handle knows of, so nothing would stop it."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held  # only the main thread may set handlers (and only it gets the signals)
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in sigs}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _release(handle: Any) -> None:
    """Give up this process's handle; pgserver stops the server when no handle is left."""
    # pgserver counts handles as pids in pgdata/.handle_pids.json. A process that died without
    # releasing its own (SIGKILL; an older `wa-cloud dev` on SIGTERM) would keep the server up
    # for ever after, so dead pids are dropped first, under pgserver's lock.
    with handle._lock:
        handles = handle.global_process_id_list
        handles.put([pid for pid in handles.get() if _alive(pid)])
    handle.cleanup()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

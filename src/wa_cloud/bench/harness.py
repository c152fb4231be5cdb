"""What the benches run their processes with: subprocesses (wa-cloud's own among them) on free
loopback ports with their output in a log, ready when they answer or log so, always stopped; a
throw-away embedded PostgreSQL with the migrations; one run wrapper, SIGTERM handled like Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wa_cloud.bench.load import read_response, request_head

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
WEBHOOK_PATH = "/webhook"
# One process, uvloop and httptools: what `wa-cloud serve` runs with (uvicorn's "auto" picks
# both when installed, and uvicorn[standard] installs them), so the baselines are like for like.
UVICORN_SETTINGS: dict[str, Any] = {
    "host": HOST,
    "loop": "uvloop",
    "http": "httptools",
    "log_config": None,
    "access_log": False,
}
READY_TIMEOUT = 60.0
READY_POLL = 0.1
PROBE_TIMEOUT = 2.0
STOP_TIMEOUT = 15.0
LOG_TAIL_BYTES = 2000


class StartFailed(Exception):
    """A process the bench needs did not come up, or could not be seeded; the message says why."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # A session of its own: Ctrl-C reaches only us, and we stop servers in a known order.
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        logger.warning("bench server ignored SIGTERM; killing it", extra={"pid": process.pid})
        process.kill()
        process.wait()


def _log_tail(log: Path) -> str:
    try:
        data = log.read_bytes()
    except OSError:
        return ""
    return data[-LOG_TAIL_BYTES:].decode("utf-8", "replace").strip()


async def _probe(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request_head("GET", path, f"{HOST}:{port}", {}))
        status, _, _ = await read_response(reader)
        return status
    finally:
        writer.close()


async def _answers(port: int, path: str, expect: int | None) -> bool:
    with contextlib.suppress(OSError, EOFError, ValueError, TimeoutError):
        async with asyncio.timeout(PROBE_TIMEOUT):
            status = await _probe(port, path)
        return expect is None or status == expect
    return False


async def _has_logged(log: Path, marker: bytes) -> bool:
    with contextlib.suppress(OSError):
        return marker in await asyncio.to_thread(log.read_bytes)
    return False


async def _wait_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], Awaitable[bool]], awaited: str
) -> None:
    """Until `ready()` holds; fail if the process exits first, or after READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            raise StartFailed(f"exited with code {process.returncode}")
        if await ready():
            return
        if time.monotonic() > deadline:
            raise StartFailed(f"{awaited} within {READY_TIMEOUT:.0f} s")
        await asyncio.sleep(READY_POLL)


@contextlib.asynccontextmanager
async def _running(
    argv: list[str],
    env: dict[str, str],
    log: Path,
    ready: Callable[[], Awaitable[bool]],
    awaited: str,
) -> AsyncIterator[int]:
    """A subprocess writing to `log`, once `ready()`; yields its pid, stops it on the way out."""
    process = _start_process(argv, env, log)
    try:
        try:
            await _wait_ready(process, ready, awaited)
        except StartFailed as exc:
            raise StartFailed(f"{exc}\n--- {log.stem} output ---\n{_log_tail(log)}") from None
        yield process.pid
    finally:
        _stop_process(process)


@dataclass(frozen=True, slots=True)
class Launch:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    ready_status: int | None


def wa_cloud_argv(*args: str) -> list[str]:
    """`wa-cloud ARGS` run by this interpreter, whatever is on PATH."""
    return [sys.executable, "-m", "wa_cloud.cli", *args]


def wa_cloud_env(database_url: str, app_secret: str) -> dict[str, str]:
    """This environment and what a wa-cloud process needs, its keys new for each run."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "WA_SECRET_KEY": secrets.token_urlsafe(32),
        "WA_APP_SECRET": app_secret,
        "WA_ADMIN_TOKEN": "adm_" + secrets.token_urlsafe(24),
        "WA_LOG_FORMAT": "json",
    }


def serve_launch(name: str, env: dict[str, str], port: int, *, in_process_worker: bool) -> Launch:
    argv = wa_cloud_argv("serve", "--host", HOST, "--port", str(port))
    if not in_process_worker:
        argv.append("--no-worker")
    return Launch(name, argv, env, port, "/readyz", 200)


def local_server(launch: Launch, workdir: Path) -> contextlib.AbstractAsyncContextManager[int]:
    """A server subprocess, ready once GET `ready_path` answers `ready_status` (any status when
    None); yields its pid and stops it on the way out."""
    path, expect = launch.ready_path, launch.ready_status
    ready = functools.partial(_answers, launch.port, path, expect)
    log = workdir / f"{launch.name}.log"
    return _running(launch.argv, launch.env, log, ready, f"GET {path} did not answer {expect}")


def logging_process(
    name: str, argv: list[str], env: dict[str, str], workdir: Path, marker: bytes
) -> contextlib.AbstractAsyncContextManager[int]:
    """A subprocess with no port to probe, ready once it has logged `marker`; yields its pid and
    stops it on the way out."""
    log = workdir / f"{name}.log"
    ready = functools.partial(_has_logged, log, marker)
    return _running(argv, env, log, ready, f"did not log {marker!r}")


def _start_database(workdir: Path) -> tuple[str, Any]:
    """(URL, pgserver handle) of a throw-away embedded server whose data lives in `workdir`."""
    from wa_cloud.db import embedded

    # Not kept running (unlike `wa-cloud dev`'s): the handle's cleanup() stops the server and
    # deletes its data, and pgserver's exit hook then has nothing left to do.
    server = embedded.server(workdir / "pg", keep_running=False)
    return str(server.get_uri()), server


@contextlib.asynccontextmanager
async def embedded_database(workdir: Path) -> AsyncIterator[str]:
    from wa_cloud.db import migrations

    try:
        # In this thread on purpose (a second or two with nothing else to run): a Ctrl-C now
        # lands at the next await, when the handle exists, so the server is always stopped.
        url, server = _start_database(workdir)
    except Exception as exc:  # pgserver raises whatever initdb or pg_ctl did; all mean "no db"
        raise StartFailed(f"embedded PostgreSQL did not start: {exc!r}") from exc
    try:
        try:
            await asyncio.to_thread(migrations.upgrade, url)
        except Exception as exc:
            raise StartFailed(f"migrations failed: {exc!r}") from exc
        yield url
    finally:
        server.cleanup()


@contextlib.contextmanager
def cancel_on_sigterm() -> Iterator[None]:
    """SIGTERM cancels the bench like Ctrl-C does, so its servers and temp dir are cleaned up."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):  # not the main thread, or not a POSIX loop
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def say(bench: str, what: str) -> None:
    print(f"wa-cloud bench {bench}: {what}", file=sys.stderr, flush=True)


def progress(bench: str, what: str) -> None:
    print(f"  {bench}: {what}", file=sys.stderr, flush=True)


def print_logs(workdir: Path) -> None:
    """A seeding step that failed names an HTTP status; the why is in the servers' logs."""
    for log in sorted(workdir.glob("*.log")):
        tail = _log_tail(log)
        if tail:
            print(f"--- {log.name} (tail) ---\n{tail}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class Report:
    lines: list[str]
    exit_code: int = 0


async def run_bench(
    bench: str, run: Callable[[contextlib.AsyncExitStack, Path], Awaitable[Report]]
) -> int:
    """`run` with a temp dir and an exit stack to start its processes on; its report is printed
    once they are all stopped. Returns the exit code: 1 when something did not start (its logs
    are printed), 130 when SIGTERM or Ctrl-C cut the run short."""
    try:
        with cancel_on_sigterm(), tempfile.TemporaryDirectory(prefix="wa-cloud-bench-") as tmp:
            workdir = Path(tmp)
            async with contextlib.AsyncExitStack() as stack:
                try:
                    report = await run(stack, workdir)
                except StartFailed as exc:
                    say(bench, f"failed to start: {exc}")
                    print_logs(workdir)
                    return 1
    except asyncio.CancelledError:
        say(bench, "interrupted; processes stopped")
        return 130
    print("\n".join(report.lines), flush=True)
    return report.exit_code

"""`wa-cloud bench ingest`: webhook ingest against a bare Starlette endpoint and pywa, same run.

Three targets are measured one after another on this machine, each alone so none competes with
another for CPU: "bare" (a Starlette route that reads the body and answers 200), "pywa" (pywa's
own FastAPI webhook, which checks the signature and acknowledges before processing) and
"wa-cloud" (ours, which commits the body durably before it acknowledges; or `--url`).

Every target gets the same signed corpus bodies from the same load generator: keep-alive HTTP/1.1
connections written over raw asyncio streams with pre-built request bytes, in their own
process(es) on uvloop, because a general-purpose HTTP client would be slower than the servers and
the comparison would then measure the client.

The servers are subprocesses of this module (`python -m wa_cloud.bench.ingest --serve
bare|pywa`) and of `python -m wa_cloud.cli serve`, so the bench needs nothing but the installed
package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import math
import multiprocessing
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wa_cloud.inbound.signature import sign
from wa_cloud.sandbox.corpus import corpus_files

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
# The baselines read their app secret from the environment, not argv, so `ps` never shows it.
SECRET_ENV = "WA_BENCH_APP_SECRET"
PYWA_VERIFY_TOKEN = "wa-cloud-bench"
# The corpus's business number: pywa filters updates by phone_id, so its handler really runs.
PYWA_PHONE_ID = "106540352242922"

# One load process: measured on the 2-core reference machine, it drives the fastest target
# (bare) at well under one core while the server is saturated; a second process would only take
# CPU from the server it measures.
LOAD_PROCESSES = 1
# Time for the load process(es) to spawn and connect before the shared clock starts.
LOAD_START_ALLOWANCE = 1.5
# After the window closes, in-flight requests get this long before they count as timeouts.
LOAD_GRACE = 5.0
RECONNECT_PAUSE = 0.05
READY_TIMEOUT = 60.0
READY_POLL = 0.1
PROBE_TIMEOUT = 2.0
STOP_TIMEOUT = 15.0
LOG_TAIL_BYTES = 2000


class StartFailed(Exception):
    """A target's server did not come up; the message says why."""


# --- the load generator -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    path: str
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL must be http:// or https:// with a host")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, path, tls)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Window:
    """Shared by every load process: time.monotonic() is one system-wide clock."""

    begin: float
    warmup: float
    seconds: float

    @property
    def start(self) -> float:
        return self.begin + self.warmup

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass(frozen=True, slots=True)
class LoadSpec:
    endpoint: Endpoint
    requests: list[bytes]
    window: Window
    firsts: list[int]  # one per connection: the index of its first request, to spread bodies
    # Requests a second for each connection (None: as fast as answers come). Paced, latency
    # runs from when a request was due, so time spent queued behind a slow answer counts.
    per_connection_rate: float | None = None


@dataclass(slots=True)
class Tally:
    """What one load process saw inside the window: latencies of answered requests, outcomes."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    outcomes: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0

    def merge(self, other: Tally) -> None:
        self.latencies.extend(other.latencies)
        self.outcomes.update(other.outcomes)
        self.cpu_seconds += other.cpu_seconds


def build_requests(endpoint: Endpoint, bodies: list[bytes], secret: str) -> list[bytes]:
    """Each body as complete request bytes, signed once here so the loop only writes."""
    requests = []
    for body in bodies:
        head = (
            f"POST {endpoint.path} HTTP/1.1\r\n"
            f"Host: {endpoint.authority}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Hub-Signature-256: {sign(body, secret)}\r\n"
            "\r\n"
        )
        requests.append(head.encode("latin-1") + body)
    return requests


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return
        await reader.readexactly(size + 2)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole response; return its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    if chunked:
        await _read_chunked(reader)
    elif length:
        await reader.readexactly(length)
    elif length is None and status >= 200 and status not in (204, 304):
        await reader.read()  # no framing: the body runs to the end of the connection
        keep_alive = False
    return status, keep_alive


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open(endpoint: Endpoint, tls: ssl.SSLContext | None) -> Streams:
    return await asyncio.open_connection(endpoint.host, endpoint.port, ssl=tls)


def _count(tally: Tally, window: Window, at: float, outcome: str) -> None:
    if window.start <= at < window.end:
        tally.outcomes[outcome] += 1


async def _drive(spec: LoadSpec, first: int, tls: ssl.SSLContext | None, tally: Tally) -> None:
    """One keep-alive connection: one request in flight at a time, until the window closes."""
    window, requests = spec.window, spec.requests
    latencies, outcomes = tally.latencies, tally.outcomes
    clock = time.monotonic
    index = first % len(requests)
    streams: Streams | None = None
    with contextlib.suppress(OSError):
        streams = await _open(spec.endpoint, tls)  # connected before the clock starts
    await asyncio.sleep(max(0.0, window.begin - clock()))
    interval = None if spec.per_connection_rate is None else 1.0 / spec.per_connection_rate
    due = window.begin + (interval or 0.0) * (first % 97) / 97  # connections out of step
    try:
        while (now := clock()) < window.end:
            if interval is not None and due > now:
                await asyncio.sleep(due - now)
                if clock() >= window.end:
                    break
            if streams is None:
                try:
                    streams = await _open(spec.endpoint, tls)
                except OSError:
                    _count(tally, window, now, "connect_failed")
                    await asyncio.sleep(RECONNECT_PAUSE)
                    continue
            reader, writer = streams
            sent = clock() if interval is None else due
            if interval is not None:
                due += interval
            writer.write(requests[index])
            index = (index + 1) % len(requests)
            try:
                status, keep_alive = await read_response(reader)
            except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
                _count(tally, window, clock(), "connection_lost")
                writer.close()
                streams = None
                continue
            done = clock()
            if window.start <= done < window.end:
                latencies.append(done - sent)
                outcomes[str(status)] += 1
            if not keep_alive:
                writer.close()
                streams = None
    finally:
        if streams is not None:
            streams[1].close()


async def _cpu_in_window(window: Window) -> float:
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    before = time.process_time()
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    return time.process_time() - before


async def _load(spec: LoadSpec) -> Tally:
    tally = Tally()
    tls = ssl.create_default_context() if spec.endpoint.tls else None
    cpu = asyncio.create_task(_cpu_in_window(spec.window))
    drivers = [asyncio.create_task(_drive(spec, first, tls, tally)) for first in spec.firsts]
    timeout = max(0.0, spec.window.end - time.monotonic()) + LOAD_GRACE
    done, pending = await asyncio.wait(drivers, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    # A request still unanswered LOAD_GRACE after the window is a timeout, not a slow success.
    if pending:
        tally.outcomes["timeout"] += len(pending)
    for task in done:
        task.result()  # a bug in the driver must not pass for a quiet run
    tally.cpu_seconds = await cpu
    return tally


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load_process(spec: LoadSpec, results: Connection) -> None:
    """Entry point of a load process (spawned): run the load, send the tally back."""
    # The parent owns Ctrl-C: it terminates us, so a traceback from here would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        results.send(runner.run(_load(spec)))
    results.close()


def _split(connections: int, processes: int, bodies: int) -> list[list[int]]:
    """Connection start indices for each process, spread evenly over the bodies."""
    firsts = [(i * bodies) // max(connections, 1) for i in range(connections)]
    return [firsts[k::processes] for k in range(processes)]


def _start_load_processes(
    endpoint: Endpoint,
    requests: list[bytes],
    window: Window,
    connections: int,
    rate: float | None,
) -> list[tuple[multiprocessing.process.BaseProcess, Connection]]:
    # spawn, not fork: the parent has an event loop and threads that a fork would copy.
    context = multiprocessing.get_context("spawn")
    started = []
    for firsts in _split(connections, LOAD_PROCESSES, len(requests)):
        receive, send = context.Pipe(duplex=False)
        per_connection = None if rate is None else rate / connections
        spec = LoadSpec(endpoint, requests, window, firsts, per_connection)
        process = context.Process(target=_load_process, args=(spec, send), daemon=True)
        process.start()
        send.close()
        started.append((process, receive))
    return started


def _receive(results: Connection) -> Tally:
    try:
        tally = results.recv()
    except EOFError:
        raise RuntimeError("a load process exited without results (its error is above)") from None
    assert isinstance(tally, Tally)
    return tally


def _stop_load_processes(
    started: list[tuple[multiprocessing.process.BaseProcess, Connection]],
) -> None:
    for process, results in started:
        if process.is_alive():
            process.terminate()
        process.join()
        results.close()


async def run_load(
    endpoint: Endpoint,
    requests: list[bytes],
    window: Window,
    connections: int,
    *,
    rate: float | None = None,
) -> Tally:
    """Closed loop (each connection sends its next request when answered), or `rate` requests
    a second in all, paced (open loop: the measure of latency at a given load)."""
    started = _start_load_processes(endpoint, requests, window, connections, rate)
    try:
        parts = await asyncio.gather(*(asyncio.to_thread(_receive, r) for _, r in started))
    finally:
        _stop_load_processes(started)
    total = Tally()
    for part in parts:
        total.merge(part)
    return total


# --- servers ------------------------------------------------------------------------------------


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    return Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"])])


def _pywa_app(app_secret: str) -> Any:
    """pywa on a FastAPI app as its docs recommend, in its faster async flavour (pywa_async:
    the sync one hands every update to a thread and measures at about a tenth of bare here);
    no callback_url, so it never calls Meta."""
    from fastapi import FastAPI
    from pywa_async import WhatsApp, types

    app = FastAPI()
    wa = WhatsApp(
        phone_id=PYWA_PHONE_ID,
        token="wa-cloud-bench-token",  # never used: nothing here sends
        server=app,
        app_secret=app_secret,
        verify_token=PYWA_VERIFY_TOKEN,
        validate_updates=True,
        webhook_endpoint=WEBHOOK_PATH,
    )

    @wa.on_message()
    async def ignore(_: WhatsApp, message: types.Message) -> None:
        """Does nothing: the bench measures pywa's webhook path, not a bot."""

    return app


def serve_baseline(kind: str, port: int) -> None:
    """Run one baseline server in this process until it is signalled (the subprocess side)."""
    import uvicorn

    app = _bare_app() if kind == "bare" else _pywa_app(os.environ[SECRET_ENV])
    uvicorn.run(app, port=port, **UVICORN_SETTINGS)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
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


def _stop(process: subprocess.Popen[bytes]) -> None:
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
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        status, _ = await read_response(reader)
        return status
    finally:
        writer.close()


async def _wait_ready(
    process: subprocess.Popen[bytes], port: int, path: str, expect: int | None
) -> None:
    """Until GET `path` answers `expect` (any status when None); fail if the process exits."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            raise StartFailed(f"exited with code {process.returncode}")
        with contextlib.suppress(OSError, EOFError, ValueError, TimeoutError):
            async with asyncio.timeout(PROBE_TIMEOUT):
                status = await _probe(port, path)
            if expect is None or status == expect:
                return
        if time.monotonic() > deadline:
            raise StartFailed(f"GET {path} did not answer {expect} within {READY_TIMEOUT:.0f} s")
        await asyncio.sleep(READY_POLL)


@dataclass(frozen=True, slots=True)
class Launch:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    ready_status: int | None


@contextlib.asynccontextmanager
async def local_server(launch: Launch, workdir: Path) -> AsyncIterator[int]:
    """A server subprocess, ready to serve; yields its pid and stops it on the way out."""
    log = workdir / f"{launch.name}.log"
    process = _spawn(launch.argv, launch.env, log)
    try:
        try:
            await _wait_ready(process, launch.port, launch.ready_path, launch.ready_status)
        except StartFailed as exc:
            raise StartFailed(f"{exc}\n--- server output ---\n{_log_tail(log)}") from None
        yield process.pid
    finally:
        _stop(process)


def _baseline_launch(kind: str, secret: str) -> Launch:
    port = free_port()
    argv = [sys.executable, "-m", "wa_cloud.bench.ingest", "--serve", kind, "--port", str(port)]
    if kind == "pywa":
        query = f"hub.mode=subscribe&hub.verify_token={PYWA_VERIFY_TOKEN}&hub.challenge=1"
        ready_path, ready_status = f"{WEBHOOK_PATH}?{query}", 200
    else:
        ready_path, ready_status = WEBHOOK_PATH, None  # POST-only route: any answer means up
    env = {**os.environ, SECRET_ENV: secret}
    return Launch(kind, argv, env, port, ready_path, ready_status)


def _wa_cloud_launch(database_url: str, secret: str) -> Launch:
    port = free_port()
    argv = [sys.executable, "-m", "wa_cloud.cli", "serve", "--no-worker"]
    argv += ["--host", HOST, "--port", str(port)]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WA_SECRET_KEY": secrets.token_urlsafe(32),
        "WA_APP_SECRET": secret,
        "WA_ADMIN_TOKEN": "adm_" + secrets.token_urlsafe(24),
        "WA_LOG_FORMAT": "json",
    }
    return Launch("wa-cloud", argv, env, port, "/readyz", 200)


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


# --- measuring and reporting --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    requests: int  # answered in the window, whatever the status
    ok: int  # of which 200: what throughput and the ratios count, so errors never look fast
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    outcomes: dict[str, int]
    client_cpu: float  # share of one core used by the load generator
    server_cpu: float | None  # share of one core used by the server process, when local

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "rps": round(self.throughput, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    stats: Stats | None = None
    skipped: str | None = None
    failed: str | None = None


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(tally: Tally, seconds: float, server_cpu: float | None) -> Stats:
    ordered = sorted(tally.latencies)
    ok = tally.outcomes.get("200", 0)
    return Stats(
        requests=len(ordered),
        ok=ok,
        seconds=seconds,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        errors=sum(tally.outcomes.values()) - ok,
        outcomes=dict(tally.outcomes),
        client_cpu=tally.cpu_seconds / seconds,
        server_cpu=server_cpu,
    )


def _cpu_seconds(pid: int) -> float | None:
    try:
        import psutil  # installed with pgserver; optional all the same
    except ImportError:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


async def _server_cpu(pid: int | None, window: Window) -> float | None:
    """The server process's share of one core during the measured window."""
    if pid is None:
        return None
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    before = _cpu_seconds(pid)
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    after = _cpu_seconds(pid)
    if before is None or after is None:
        return None
    return (after - before) / window.seconds


async def measure(
    endpoint: Endpoint, requests: list[bytes], args: argparse.Namespace, pid: int | None
) -> Stats:
    window = Window(time.monotonic() + LOAD_START_ALLOWANCE, args.warmup, args.seconds)
    server_cpu = asyncio.create_task(_server_cpu(pid, window))
    tally = await run_load(endpoint, requests, window, args.connections)
    return summarize(tally, args.seconds, await server_cpu)


def _progress(name: str, what: str) -> None:
    print(f"  {name}: {what}", file=sys.stderr, flush=True)


def _pywa_missing() -> str | None:
    # Looked up, not imported: the server subprocess imports them, and reports if that fails.
    for name in ("pywa", "fastapi"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (pip install 'wa-cloud[bench]')"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    endpoint: Endpoint
    requests: list[bytes]
    pid: int | None


async def _start_local(
    stack: contextlib.AsyncExitStack,
    launch: Launch,
    bodies: list[bytes],
    secret: str,
    workdir: Path,
) -> Target:
    _progress(launch.name, "starting")
    pid = await stack.enter_async_context(local_server(launch, workdir))
    endpoint = Endpoint(HOST, launch.port, WEBHOOK_PATH)
    return Target(launch.name, endpoint, build_requests(endpoint, bodies, secret), pid)


async def _start_wa_cloud(
    stack: contextlib.AsyncExitStack,
    bodies: list[bytes],
    args: argparse.Namespace,
    workdir: Path,
) -> tuple[Target, str | None]:
    """Our server (or `--url`), and the database URL when we started the database."""
    if args.url:
        endpoint = Endpoint.from_url(args.url)
        return Target(
            "wa-cloud", endpoint, build_requests(endpoint, bodies, args.secret), None
        ), None
    _progress("wa-cloud", "starting embedded PostgreSQL")
    database_url = await stack.enter_async_context(embedded_database(workdir))
    secret = secrets.token_hex(16)
    launch = _wa_cloud_launch(database_url, secret)
    return await _start_local(stack, launch, bodies, secret, workdir), database_url


async def _check_stored(database_url: str, acknowledged: int) -> None:
    """Every acknowledged delivery must be a committed row: count them after the run."""
    from wa_cloud.db.pool import connect

    conn = await connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM deliveries")
    finally:
        await conn.close()
    verdict = "ok" if stored >= acknowledged else "MISSING ROWS"
    _progress(
        "wa-cloud",
        f"{stored} deliveries committed; {acknowledged} acknowledged in the measured windows "
        f"(plus warm-ups): {verdict}",
    )


def median_run(runs: list[Stats]) -> Stats:
    """The round with the median throughput: one noisy round does not decide the ratio."""
    return sorted(runs, key=lambda s: s.throughput)[len(runs) // 2]


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_table(outcomes: list[Outcome]) -> list[str]:
    columns = "{:<10} {:>9} {:>10} {:>8} {:>8} {:>7} {:>11} {:>11}"
    lines = [
        columns.format(
            "target", "requests", "req/s", "p50 ms", "p99 ms", "errors", "client cpu", "server cpu"
        )
    ]
    for outcome in outcomes:
        stats = outcome.stats
        if stats is None:
            why = f"skipped: {outcome.skipped}" if outcome.skipped else "FAILED to start"
            lines.append(f"{outcome.name:<10} {why}")
            continue
        lines.append(
            columns.format(
                outcome.name,
                stats.requests,
                f"{stats.throughput:.1f}",
                f"{stats.p50_ms:.2f}",
                f"{stats.p99_ms:.2f}",
                stats.errors,
                f"{stats.client_cpu:.0%}",
                _cell(stats.server_cpu, ".0%"),
            )
        )
    return lines


def ratios(outcomes: list[Outcome]) -> dict[str, float]:
    by_name = {o.name: o.stats for o in outcomes if o.stats is not None}
    bare = by_name.get("bare")
    if bare is None or bare.throughput == 0:
        return {}
    return {
        f"{name}/bare": round(stats.throughput / bare.throughput, 3)
        for name, stats in by_name.items()
        if name != "bare"
    }


LEGEND = (
    "bare: reads the body, answers 200 | pywa: checks the signature, answers, processes in a "
    "task | wa-cloud: checks the signature, commits to PostgreSQL, answers",
    "req/s counts 200 responses; p50/p99 from writing a request to reading its whole response; "
    "cpu: share of one core in the measured window (server: its own process, not PostgreSQL)",
)
# docs/design.md, "Performance targets": against bare, in the same run.
TARGET_RATIO = 0.6
TARGET_P99_MS = 50.0


def _verdict(name: str, ratio: float) -> str:
    line = f"{name:<14} {ratio:.2f} of bare throughput"
    if name == "wa-cloud/bare":
        line += f" (target: at least {TARGET_RATIO:.2f}, p99 under {TARGET_P99_MS:.0f} ms)"
    return line


def render_report(outcomes: list[Outcome], args: argparse.Namespace, bodies: int) -> list[str]:
    lines = ["", *render_table(outcomes), *LEGEND, ""]
    for outcome in outcomes:
        if outcome.failed:
            lines += [f"{outcome.name} failed to start: {outcome.failed}", ""]
        elif outcome.stats and outcome.stats.errors:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.stats.outcomes.items()))
            lines.append(f"{outcome.name} responses: {detail}")
    found = ratios(outcomes)
    for name in ("wa-cloud/bare", "pywa/bare"):
        if name in found:
            lines.append(_verdict(name, found[name]))
    summary = {
        "bench": "ingest",
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "bodies": bodies,
        "load_processes": LOAD_PROCESSES,
        "targets": {o.name: o.stats.summary() for o in outcomes if o.stats is not None},
        "ratios": found,
    }
    return [*lines, json.dumps(summary)]


def exit_code(outcomes: list[Outcome]) -> int:
    for outcome in outcomes:
        if outcome.failed:
            return 1
        if outcome.stats is not None and outcome.stats.ok == 0:
            return 1  # every request errored, or none was answered at all
    return 0


def check_load_args(args: argparse.Namespace) -> str | None:
    """The load options every bench that drives webhooks takes."""
    if args.connections < 1 or args.seconds <= 0 or args.warmup < 0 or args.rounds < 1:
        return (
            "--connections and --rounds must be at least 1, --seconds positive, "
            "--warmup not negative"
        )
    return None


def _check_args(args: argparse.Namespace) -> str | None:
    problem = check_load_args(args)
    if problem:
        return problem
    if args.url:
        if not args.secret:
            return "--url needs --secret, the app secret that server verifies signatures with"
        try:
            Endpoint.from_url(args.url)
        except ValueError as exc:
            return str(exc)
    return None


def read_bodies() -> list[bytes]:
    return [path.read_bytes() for path in corpus_files()]


@contextlib.contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
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


async def _run_targets(bodies: list[bytes], args: argparse.Namespace) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="wa-cloud-bench-") as tmp:
        workdir = Path(tmp)
        secret = secrets.token_hex(16)
        async with contextlib.AsyncExitStack() as stack:
            # Every server is started first and stays up; the rounds then load one target at a
            # time (the others idle), alternating, so a slow minute of the machine hits all.
            order = ["bare", "pywa", "wa-cloud"]
            targets: dict[str, Target] = {}
            outcomes: dict[str, Outcome] = {}
            database_url: str | None = None
            for name in order:
                try:
                    if name == "wa-cloud":
                        targets[name], database_url = await _start_wa_cloud(
                            stack, bodies, args, workdir
                        )
                    elif name == "pywa" and (args.no_pywa or _pywa_missing()):
                        outcomes[name] = Outcome(
                            name, skipped="--no-pywa" if args.no_pywa else _pywa_missing()
                        )
                    else:
                        launch = _baseline_launch(name, secret)
                        targets[name] = await _start_local(stack, launch, bodies, secret, workdir)
                except StartFailed as exc:
                    outcomes[name] = Outcome(name, failed=str(exc))
            runs: dict[str, list[Stats]] = {name: [] for name in targets}
            for round_ in range(1, args.rounds + 1):
                for name, target in targets.items():
                    _progress(
                        name,
                        f"round {round_}/{args.rounds}: {args.warmup:g} s warmup + "
                        f"{args.seconds:g} s",
                    )
                    runs[name].append(
                        await measure(target.endpoint, target.requests, args, target.pid)
                    )
            for name, stats in runs.items():
                outcomes[name] = Outcome(name, median_run(stats))
            if database_url is not None:
                await _check_stored(database_url, sum(s.ok for s in runs["wa-cloud"]))
            return [outcomes[name] for name in order if name in outcomes]


async def run_ingest_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        print(f"wa-cloud bench ingest: {problem}", file=sys.stderr)
        return 2
    bodies = await asyncio.to_thread(read_bodies)
    if not bodies:
        print("wa-cloud bench ingest: the webhooks/ corpus is empty", file=sys.stderr)
        return 2
    print(
        f"wa-cloud bench ingest: {len(bodies)} corpus bodies, {args.connections} connections, "
        f"{args.rounds} round(s) of {args.warmup:g} s warmup + {args.seconds:g} s per target "
        "(the median round is shown), "
        f"{LOAD_PROCESSES} load process(es){'' if _event_loop_factory() else ' (no uvloop)'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        with _cancel_on_sigterm():
            outcomes = await _run_targets(bodies, args)
    except asyncio.CancelledError:
        print("wa-cloud bench ingest: interrupted; servers stopped", file=sys.stderr)
        return 130
    print("\n".join(render_report(outcomes, args, len(bodies))), flush=True)
    return exit_code(outcomes)


def main(argv: list[str] | None = None) -> None:
    """`python -m wa_cloud.bench.ingest --serve bare|pywa --port N`: a baseline server."""
    parser = argparse.ArgumentParser(prog="python -m wa_cloud.bench.ingest")
    parser.add_argument("--serve", choices=("bare", "pywa"), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve_baseline(args.serve, args.port)


if __name__ == "__main__":
    main()

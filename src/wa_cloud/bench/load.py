"""The load generator: keep-alive HTTP/1.1 connections written over raw asyncio streams with
pre-built request bytes, in their own process(es) on uvloop, so the client is never the slow side.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import ssl
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TypeVar
from urllib.parse import urlsplit

from wa_cloud.inbound.signature import sign
from wa_cloud.sandbox.corpus import corpus_files

# One load process: measured on the 2-core reference machine, it drives the fastest target
# (bare) at well under one core while the server is saturated; a second process would only take
# CPU from the server it measures.
LOAD_PROCESSES = 1
# Time for the load process(es) to spawn and connect before the shared clock starts.
LOAD_START_ALLOWANCE = 1.5
# After the window closes, in-flight requests get this long before they count as timeouts.
LOAD_GRACE = 5.0
RECONNECT_PAUSE = 0.05

T = TypeVar("T")


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

    async def read_at_edges(self, read: Callable[[], T]) -> tuple[T, T]:
        """`read()` as the measured part opens, and again as it closes."""
        await asyncio.sleep(max(0.0, self.start - time.monotonic()))
        before = read()
        await asyncio.sleep(max(0.0, self.end - time.monotonic()))
        return before, read()


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


def request_head(method: str, path: str, authority: str, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 request's head (Host first, then `headers` in their order), to write before
    its body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_requests(endpoint: Endpoint, bodies: list[bytes], secret: str) -> list[bytes]:
    """Each body as complete request bytes, signed once here so the loop only writes."""
    requests = []
    for body in bodies:
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "X-Hub-Signature-256": sign(body, secret),
        }
        requests.append(request_head("POST", endpoint.path, endpoint.authority, headers) + body)
    return requests


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        chunks.append((await reader.readexactly(size + 2))[:-2])


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one whole response; return its status, whether the connection stays open, and its
    body."""
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
    body = b""
    if chunked:
        body = await _read_chunked(reader)
    elif length:
        body = await reader.readexactly(length)
    elif length is None and status >= 200 and status not in (204, 304):
        body = await reader.read()  # no framing: the body runs to the end of the connection
        keep_alive = False
    return status, keep_alive, body


class KeepAlive:
    """One keep-alive HTTP/1.1 connection, one request at a time; opened again after the server
    closed it or it broke."""

    __slots__ = ("host", "port", "streams", "tls")

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> bool:
        """Open unless open; False when the connection was refused."""
        if self.streams is None:
            try:
                self.streams = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
            except OSError:
                return False
        return True

    async def exchange(self, *request: bytes) -> int | None:
        """Write a request (once open), read its whole response: its status, or None when the
        connection was lost on the way."""
        assert self.streams is not None
        reader, writer = self.streams
        writer.writelines(request)
        try:
            status, keep_alive, _ = await read_response(reader)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
            self.close()
            return None
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _count(tally: Tally, window: Window, at: float, outcome: str) -> None:
    if window.start <= at < window.end:
        tally.outcomes[outcome] += 1


async def _drive(spec: LoadSpec, first: int, tls: ssl.SSLContext | None, tally: Tally) -> None:
    """One keep-alive connection: one request in flight at a time, until the window closes."""
    window, requests = spec.window, spec.requests
    latencies, outcomes = tally.latencies, tally.outcomes
    clock = time.monotonic
    index = first % len(requests)
    connection = KeepAlive(spec.endpoint.host, spec.endpoint.port, tls)
    await connection.open()  # connected before the clock starts (or again in the loop)
    await asyncio.sleep(max(0.0, window.begin - clock()))
    interval = None if spec.per_connection_rate is None else 1.0 / spec.per_connection_rate
    due = window.begin + (interval or 0.0) * (first % 97) / 97  # connections out of step
    try:
        while (now := clock()) < window.end:
            if interval is not None and due > now:
                await asyncio.sleep(due - now)
                if clock() >= window.end:
                    break
            if not await connection.open():
                _count(tally, window, now, "connect_failed")
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            sent = clock() if interval is None else due
            if interval is not None:
                due += interval
            request = requests[index]
            index = (index + 1) % len(requests)
            status = await connection.exchange(request)
            done = clock()
            if status is None:
                _count(tally, window, done, "connection_lost")
            elif window.start <= done < window.end:
                latencies.append(done - sent)
                outcomes[str(status)] += 1
    finally:
        connection.close()


async def _load(spec: LoadSpec) -> Tally:
    tally = Tally()
    tls = ssl.create_default_context() if spec.endpoint.tls else None
    cpu = asyncio.create_task(spec.window.read_at_edges(time.process_time))
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
    before, after = await cpu
    tally.cpu_seconds = after - before
    return tally


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _load_process(spec: LoadSpec, results: Connection) -> None:
    """Entry point of a load process (spawned): run the load, send the tally back."""
    # The parent owns Ctrl-C: it terminates us, so a traceback from here would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
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
    started: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
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


def check_load_args(args: argparse.Namespace) -> str | None:
    """The load options every bench that drives webhooks takes."""
    if args.connections < 1 or args.seconds <= 0 or args.warmup < 0 or args.rounds < 1:
        return (
            "--connections and --rounds must be at least 1, --seconds positive, "
            "--warmup not negative"
        )
    return None


def read_bodies() -> list[bytes]:
    return [path.read_bytes() for path in corpus_files()]

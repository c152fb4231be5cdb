"""`wa-cloud bench noisy`: webhook latency with and without a noisy neighbour.

docs/design.md, "Performance targets": webhook p99 with one tenant flooding slow sends and huge
uploads under twice the p99 without it.

The run, all on loopback and all subprocesses of this one: an embedded PostgreSQL with the
migrations; the sandbox Meta (status webhooks off), answering the noisy number's sends 3 s late
(a sandbox fault: accepted, answered late); a "slow front" in front of the sandbox that holds
every Graph call made with the noisy number's token 2 to 5 s (the sandbox delays sends only, and
the web process never sends: it calls Meta for template lists and media uploads) and serves
files slowly for media-by-URL; `wa-cloud serve --no-worker` (the process under test, its Graph
base URL the slow front, private URLs allowed so the loopback file server can be named); one
`wa-cloud worker` (Graph base URL the sandbox itself).

Two tenants: the quiet one owns the corpus's business number, and its signed corpus deliveries
are what the load generator of `bench ingest` posts to `POST /webhook` at a fixed concurrency;
the noisy one owns another number on another WABA and holds an API key per kind of flood (the
request rate is limited per key). Each round measures a baseline phase, then a flood phase in
which the noisy tenant, at the same time:

- posts template sends naming templates that do not exist (each makes the web process fetch
  the WABA's template list from slow Meta);
- posts valid template sends (queued; the worker's sends to Meta take 3 s each);
- uploads 15 MB documents, several at once (multipart: read by the web process, then uploaded
  to slow Meta);
- asks for media by URL from a loopback server that trickles a 15 MB file;
- posts 3 MB non-ASCII webhooks with a wrong signature (no secret needed: the escaped-unicode
  fallback of the signature check is the CPU attack).

A flood client that gets a 429 pauses before its next request, as one honouring Retry-After
would. The flood's client runs in a process of its own, and it, the sandbox and the slow front
run at the lowest CPU priority (nice 19): on machines of their own they would take none of
ours (`--same-priority` runs them at ours). `--waits` samples what PostgreSQL's busy backends
wait on, by application_name, and what it wrote in each phase. Before each phase the bench
waits until the web process is idle, so a phase does not start with the previous one's work
still running. `--flood` picks some kinds only (to find which one hurts).

Reported: p50/p99/throughput of the quiet webhooks per phase (the median-throughput round, as
`bench ingest`), each round's p99(flood)/p99(baseline) and their median, what the flood achieved
(requests, answers by status, requests still unanswered when the phase ended), and CPU by
process in the measured windows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from wa_cloud.bench.harness import (
    HOST,
    UVICORN_SETTINGS,
    WEBHOOK_PATH,
    Launch,
    Report,
    StartFailed,
    free_port,
    local_server,
    progress,
    run_bench,
    say,
)
from wa_cloud.bench.load import (
    LOAD_START_ALLOWANCE,
    RECONNECT_PAUSE,
    Endpoint,
    KeepAlive,
    Window,
    build_requests,
    check_load_args,
    read_bodies,
    request_head,
    run_load,
)
from wa_cloud.bench.send import (
    HTTP_TIMEOUT,
    PlannedNumber,
    Stack,
    Tenant,
    api_post,
    checked,
    cpu_shares,
    cpu_snapshot,
    create_tenant,
    seed_number,
    seed_template,
    send_request,
    start_stack,
    status_counts,
)
from wa_cloud.bench.stats import Outcome, Stats, median_run, render_table, summarize
from wa_cloud.db.pool import connect

MB = 1024 * 1024
# The corpus's business number (on send.py's WABA_ID): the quiet tenant's, so its deliveries
# are indexed like any tenant's.
QUIET_NUMBER = "106540352242922"
NOISY_NUMBER = "106540359900001"
NOISY_WABA = "102290129399001"
GRAPH_SLOW_SECONDS = (2.0, 5.0)  # the slow front's hold on the noisy token's Graph calls
# The kinds of flood, by the name `--flood` takes: (what it is, keep-alive connections).
FLOODS: dict[str, tuple[str, int]] = {
    "unknown-templates": ("send unknown template", 32),
    "slow-sends": ("send, slow at Meta", 16),
    "uploads": ("upload 15 MB", 4),
    "url-uploads": ("upload by slow URL", 8),
    "bad-webhooks": ("webhook 3 MB bad sig", 4),
}
# The request rate is limited per API key: each API flood uses a key of its own, as a tenant's
# several services would (one key for all would only measure the limiter's 429s).
NOISY_KEYS = len(FLOODS) - 1
SEND_SLOW_SECONDS = 3.0  # the sandbox's answer to the noisy number's sends
UPLOAD_BYTES = 15 * MB
ATTACK_BYTES = 3 * MB - 64  # just under the webhook body cap, so it is read and checked
TRICKLE_CHUNK = 64 * 1024
TRICKLE_PAUSE = 0.1  # 640 KB/s: a 15 MB file takes about 24 s
RATE_LIMITED_PAUSE = 0.5
FLOOD_NUMBERS = 1_000_000  # request numbers a flood phase may use (names, recipients)
SETTLE_LIMIT = 60.0
SETTLE_POLL = 0.5
IDLE_CPU = 0.10  # the web process counts as idle under this share of one core
TARGET_RATIO = 2.0

# The slow front's settings reach its subprocess through the environment, not argv.
UPSTREAM_ENV = "WA_BENCH_UPSTREAM"
SLOW_TOKEN_ENV = "WA_BENCH_SLOW_TOKEN"


# --- the slow front: slow Meta for the noisy token, and a slow file server ---------------------

Scope = MutableMapping[str, Any]


def _pdf(size: int) -> bytes:
    head = b"%PDF-1.4\n"
    return head + b"0" * max(0, size - len(head)) if size else b""


class SlowFront:
    """Plain ASGI. `GET /file/{size}` trickles a PDF of `size` bytes; every other request goes to
    the sandbox, held first when it carries the noisy token. The noisy number's media uploads
    are answered here after the hold (the sandbox would keep every 15 MB file in memory)."""

    def __init__(self, upstream: str, slow_token: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.slow = f"Bearer {slow_token}".encode()
        self.http: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if scope["method"] == "GET" and path.startswith("/file/"):
            await self._trickle(int(path.removeprefix("/file/") or 0), send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("authorization", "").encode() == self.slow:
            await asyncio.sleep(random.uniform(*GRAPH_SLOW_SECONDS))
            if scope["method"] == "POST" and path.endswith(f"/{NOISY_NUMBER}/media"):
                media_id = str(random.randrange(10**15, 10**16))
                await _answer(send, 200, json.dumps({"id": media_id}).encode())
                return
        await self._forward(scope, headers, bytes(body), send)

    async def _forward(self, scope: Scope, headers: dict[str, str], body: bytes, send: Any) -> None:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT)
        query = scope["query_string"].decode("latin-1")
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        for hop in ("host", "content-length", "connection", "transfer-encoding"):
            headers.pop(hop, None)
        try:
            response = await self.http.request(scope["method"], url, content=body, headers=headers)
        except httpx.HTTPError:
            await _answer(send, 502, b'{"error": {"message": "sandbox unreachable"}}')
            return
        await _answer(send, response.status_code, response.content)

    @staticmethod
    async def _trickle(size: int, send: Any) -> None:
        headers = [(b"content-type", b"application/pdf"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        data = _pdf(size)
        for start in range(0, size, TRICKLE_CHUNK):
            await send(
                {
                    "type": "http.response.body",
                    "body": data[start : start + TRICKLE_CHUNK],
                    "more_body": True,
                }
            )
            await asyncio.sleep(TRICKLE_PAUSE)
        await send({"type": "http.response.body", "body": b""})


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_slow_front(port: int) -> None:
    """Run the slow front in this process until it is signalled (the subprocess side)."""
    import uvicorn

    app = SlowFront(os.environ[UPSTREAM_ENV], os.environ[SLOW_TOKEN_ENV])
    uvicorn.run(app, port=port, lifespan="off", **UVICORN_SETTINGS)


# --- the stack ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Noisy:
    stack: Stack
    front_port: int
    noisy_token: str
    serve_cpu: int | None


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` on `cpus` (the affinity of a pid is its main thread's alone)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for thread in psutil.Process(pid).threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread.id, cpus)


@contextlib.contextmanager
def serve_core() -> Iterator[int | None]:
    """With two CPUs or more, the web process gets the first to itself and everything else this
    bench starts (PostgreSQL, worker, sandbox, slow front, load generator, flood) runs on the
    others, as a web process on a machine of its own would; yields that CPU (None: not pinned).
    This process and its children inherit the affinity set here; it is restored on the way out.
    """
    if not hasattr(os, "sched_getaffinity"):
        yield None
        return
    original = os.sched_getaffinity(0)
    cpus = sorted(original)
    if len(cpus) < 2:
        yield None
        return
    os.sched_setaffinity(0, set(cpus[1:]))
    try:
        yield cpus[0]
    finally:
        os.sched_setaffinity(0, original)


async def start_noisy_stack(
    stack: contextlib.AsyncExitStack,
    workdir: Path,
    serve_cpu: int | None = None,
    low_priority_fakes: bool = True,
) -> Noisy:
    """`bench send`'s stack with one worker, status webhooks off, serve's Graph calls through the
    slow front (started last: nothing calls Graph before the seeding) and the loopback file
    server allowed. With `low_priority_fakes` the sandbox and the slow front, Meta and a file
    server on other machines in life, run at the lowest CPU priority: they take only what our
    processes leave."""
    front_port = free_port()
    running = await start_stack(
        stack,
        workdir,
        "noisy",
        webhooks=False,
        workers=1,
        env={"WA_ALLOW_PRIVATE_URLS": "true"},
        serve_graph_url=f"http://{HOST}:{front_port}",
    )
    noisy_token = "EAAG-noisy-" + secrets.token_urlsafe(16)
    progress("noisy", "starting the slow front")
    front_env = {**os.environ, UPSTREAM_ENV: running.sandbox, SLOW_TOKEN_ENV: noisy_token}
    front_argv = [sys.executable, "-m", "wa_cloud.bench.noisy", "--port", str(front_port)]
    front_pid = await stack.enter_async_context(
        local_server(Launch("front", front_argv, front_env, front_port, "/file/0", 200), workdir)
    )
    if serve_cpu is not None:
        pin(running.pids["serve"][0], {serve_cpu})
    if low_priority_fakes:
        for pid in (*running.pids["sandbox"], front_pid):
            lower_priority(pid)
    # In the order of the report's CPU lines: the process under test first.
    started = running.pids
    running.pids = {role: started[role] for role in ("serve", "worker", "sandbox")}
    running.pids.update(front=[front_pid], bench=[os.getpid()])
    return Noisy(running, front_port, noisy_token, serve_cpu)


# --- seeding ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenants:
    quiet: Tenant
    noisy: Tenant
    noisy_keys: list[str]


async def seed(noisy: Noisy) -> Tenants:
    stack = noisy.stack
    async with stack.clients() as (api, sandbox):
        quiet = await create_tenant(api, stack.admin_token, "Quiet Co")
        loud = await create_tenant(api, stack.admin_token, "Noisy Co")
        quiet_number = PlannedNumber(
            QUIET_NUMBER, "15550783881", "EAAG-quiet-" + secrets.token_urlsafe(16), 80, 0
        )
        # The noisy number on a WABA of its own: template fetches are one at a time per WABA.
        noisy_number = PlannedNumber(NOISY_NUMBER, "15550999001", noisy.noisy_token, 80, 0)
        await seed_number(api, sandbox, quiet, quiet_number)
        await seed_number(api, sandbox, loud, noisy_number, NOISY_WABA)
        await seed_template(sandbox, NOISY_WABA)
        # Every send of the noisy number is accepted and answered late, as long as the run.
        fault = {"phone_number_id": NOISY_NUMBER, "delay_seconds": SEND_SLOW_SECONDS}
        checked(
            await sandbox.post("/_sandbox/faults", json={**fault, "times": 10**9}), "sandbox fault"
        )
        keys = [loud.api_key]
        admin = {"authorization": f"Bearer {stack.admin_token}"}
        for _ in range(NOISY_KEYS - 1):
            made = await api.post(f"/v1/admin/tenants/{loud.id}/keys", headers=admin)
            keys.append(checked(made, "noisy key")["api_key"])
        # One send before the run (2 to 5 s: the template list comes from slow Meta), so the
        # tenant's template is known, as a tenant's usual one is: without it, its valid sends
        # would wait for that first fetch behind the made-up names' fetches of the same WABA.
        first = await api.post(
            "/v1/messages",
            json=send_request(NOISY_NUMBER, "447100000000"),
            headers={"authorization": f"Bearer {loud.api_key}"},
        )
        checked(first, "first noisy send", expect=(202,))
    return Tenants(quiet, loud, keys)


# --- the flood ----------------------------------------------------------------------------------


def _multipart(boundary: str, size: int) -> bytes:
    fields = {"from": NOISY_NUMBER, "type": "document"}
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    )
    return "".join(parts).encode() + _pdf(size) + f"\r\n--{boundary}--\r\n".encode()


def attack_body(size: int) -> bytes:
    """A delivery-shaped JSON body of `size` bytes alternating ASCII and non-ASCII characters:
    the costliest text for the escaped-unicode fallback (one run per character)."""
    head, tail = b'{"object": "whatsapp_business_account", "entry": [], "x": "', b'"}'
    filler = "aé".encode() * ((size - len(head) - len(tail)) // 3 + 1)
    return head + filler[: size - len(head) - len(tail)] + tail


RequestMaker = Callable[[int], list[bytes]]


@dataclass(frozen=True, slots=True)
class FloodKind:
    name: str
    connections: int
    make: RequestMaker  # the request number n as byte strings to write
    # Shared by the kind's connections and kept across phases: names and recipients stay new.
    numbers: Iterator[int] = field(default_factory=itertools.count)


def flood_kinds(
    port: int,
    keys: list[str],
    front_port: int,
    chosen: list[str] | None = None,
    first_number: int = 0,
) -> list[FloodKind]:
    """What the noisy tenant does, each kind over its own keep-alive connections; request
    numbers (template names, recipients) count from `first_number`."""
    unknown_key, send_key, upload_key, url_key = keys
    api = f"{HOST}:{port}"

    def unknown_template(n: int) -> list[bytes]:
        send = send_request(NOISY_NUMBER, f"4470{n:08d}", f"no_such_template_{n}")
        return [api_post(api, "/v1/messages", unknown_key, send)]

    def slow_send(n: int) -> list[bytes]:
        send = send_request(NOISY_NUMBER, f"4471{n:08d}")
        return [api_post(api, "/v1/messages", send_key, send)]

    boundary = "noisy" + secrets.token_hex(8)
    upload = _multipart(boundary, UPLOAD_BYTES)
    upload_headers = {
        "Authorization": f"Bearer {upload_key}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(upload)),
    }
    # Head and body apart: the 15 MB body is written from the one copy, never joined again.
    upload_head = request_head("POST", "/v1/media", api, upload_headers)

    def big_upload(n: int) -> list[bytes]:
        return [upload_head, upload]

    url = f"http://{HOST}:{front_port}/file/{UPLOAD_BYTES}"

    def url_upload(n: int) -> list[bytes]:
        document = {"from": NOISY_NUMBER, "type": "document", "url": url}
        return [api_post(api, "/v1/media", url_key, document)]

    attack = attack_body(ATTACK_BYTES)
    attack_headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
        "Content-Length": str(len(attack)),
    }
    attack_head = request_head("POST", WEBHOOK_PATH, api, attack_headers)

    def bad_webhook(n: int) -> list[bytes]:
        return [attack_head, attack]

    makers = {
        "unknown-templates": unknown_template,
        "slow-sends": slow_send,
        "uploads": big_upload,
        "url-uploads": url_upload,
        "bad-webhooks": bad_webhook,
    }
    return [
        FloodKind(FLOODS[name][0], FLOODS[name][1], makers[name], itertools.count(first_number))
        for name in (chosen or list(FLOODS))
    ]


@dataclass(slots=True)
class FloodTally:
    sent: Counter[str] = field(default_factory=Counter)
    answers: dict[str, Counter[str]] = field(default_factory=dict)
    unfinished: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def answer(self, kind: str, outcome: str) -> None:
        self.answers.setdefault(kind, Counter())[outcome] += 1

    def merge(self, other: FloodTally) -> None:
        self.sent.update(other.sent)
        self.unfinished.update(other.unfinished)
        for kind, counts in other.answers.items():
            self.answers.setdefault(kind, Counter()).update(counts)
        self.seconds += other.seconds


async def _flood_connection(port: int, kind: FloodKind, tally: FloodTally) -> None:
    """One keep-alive connection, one request at a time, until cancelled."""
    connection = KeepAlive(HOST, port)
    waiting = False
    try:
        while True:
            if not await connection.open():
                tally.answer(kind.name, "connect_failed")
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            request = kind.make(next(kind.numbers))
            tally.sent[kind.name] += 1
            waiting = True
            status = await connection.exchange(*request)
            waiting = False
            tally.answer(kind.name, "connection_lost" if status is None else str(status))
            if status == 429:
                await asyncio.sleep(RATE_LIMITED_PAUSE)
    finally:
        if waiting:
            tally.unfinished[kind.name] += 1
        connection.close()


@dataclass(frozen=True, slots=True)
class FloodSpec:
    """What a flood process needs (its requests are built there: a closure does not pickle)."""

    port: int
    keys: list[str]
    front_port: int
    chosen: list[str] | None
    first_number: int  # each phase's names and recipients are new
    low_priority: bool


def lower_priority(pid: int) -> None:
    """Every thread of `pid` at the lowest CPU priority (nice 19; on Linux a thread's own)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for thread in psutil.Process(pid).threads():
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, thread.id, 19)


def _flood_process(spec: FloodSpec, stop: Connection, results: Connection) -> None:
    if spec.low_priority:
        lower_priority(os.getpid())  # before any other thread: they inherit it
    kinds = flood_kinds(spec.port, spec.keys, spec.front_port, spec.chosen, spec.first_number)
    results.send(asyncio.run(_flood_until_stopped(spec.port, kinds, stop)))


async def _flood_until_stopped(port: int, kinds: list[FloodKind], stop: Connection) -> FloodTally:
    tally = FloodTally()
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_flood_connection(port, kind, tally))
        for kind in kinds
        for _ in range(kind.connections)
    ]
    with contextlib.suppress(EOFError):
        await asyncio.to_thread(stop.recv)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    tally.seconds = time.monotonic() - started
    for result in results:
        if isinstance(result, Exception):
            raise result  # a bug in the flood client must not pass for a quiet flood
    return tally


@contextlib.asynccontextmanager
async def flooding(spec: FloodSpec, pids: dict[str, list[int]]) -> AsyncIterator[FloodTally]:
    """The flood runs, in a process of its own (under "flood" in `pids` meanwhile, for the CPU
    figures), while the block does; its tally is complete when the block ends. On its own
    machine a tenant's client would take none of our CPU: at the lowest priority it takes only
    what our processes leave."""
    context = multiprocessing.get_context("spawn")  # not fork: this process has an event loop
    stop_here, stop_there = context.Pipe(duplex=False)
    results_here, results_there = context.Pipe(duplex=False)
    process = context.Process(
        target=_flood_process, args=(spec, stop_here, results_there), daemon=True
    )
    process.start()
    stop_here.close()
    results_there.close()
    assert process.pid is not None
    pids["flood"] = [process.pid]
    tally = FloodTally()
    try:
        yield tally
    finally:
        del pids["flood"]
        stop_there.send(None)
        stop_there.close()
        try:
            tally.merge(await asyncio.to_thread(results_here.recv))
        except EOFError:
            raise RuntimeError("the flood process failed (its error is above)") from None
        finally:
            results_here.close()
            process.join()


# --- phases -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    stats: Stats
    cpu: dict[str, float]  # cores by process role in the measured window
    flood: FloodTally | None
    others: float  # cores busy with other work on the machine when the phase started
    waits: Waits | None = None  # --waits


async def settle(stack: Stack) -> float:
    """Until the web process is idle: a phase does not start with the previous one's work still
    running there (the worker's backlog is not waited for: it indexes deliveries far slower than
    they arrive, and with little CPU). Returns the cores then busy with work not ours."""
    deadline = time.monotonic() + SETTLE_LIMIT
    started = time.monotonic()
    while True:
        before = cpu_snapshot(stack)
        await asyncio.sleep(SETTLE_POLL)
        shares = cpu_shares(before, cpu_snapshot(stack), SETTLE_POLL)
        if shares.get("serve", 0.0) < IDLE_CPU:
            if time.monotonic() - started > 2 * SETTLE_POLL:
                progress("noisy", f"settled in {time.monotonic() - started:.1f} s")
            return shares.get("other", 0.0)
        if time.monotonic() > deadline:
            progress("noisy", f"not settled after {SETTLE_LIMIT:g} s; measuring anyway")
            return shares.get("other", 0.0)


async def _cpu_in(stack: Stack, window: Window) -> dict[str, float]:
    before, after = await window.read_at_edges(functools.partial(cpu_snapshot, stack))
    return cpu_shares(before, after, window.seconds)


WAITS_QUERY = """
SELECT coalesce(nullif(application_name, ''), 'other') AS role,
       coalesce(wait_event_type || ':' || wait_event, 'cpu') AS wait,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 48) AS query
  FROM pg_stat_activity
 WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
WAITS_POLL = 0.01
# PostgreSQL's own counters, read at both edges of the window: what the phase made it write.
# (The columns of PostgreSQL 15 and 16, which the embedded server this bench starts runs.)
WAL_QUERY = """
SELECT w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_write, w.wal_sync,
       b.checkpoints_timed + b.checkpoints_req AS checkpoints,
       b.buffers_checkpoint + b.buffers_clean + b.buffers_backend AS buffers_written
  FROM pg_stat_wal w, pg_stat_bgwriter b
"""


@dataclass(slots=True)
class Waits:
    """What PostgreSQL did through a measured window (`--waits`)."""

    samples: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    wal: dict[str, float] = field(default_factory=dict)  # WAL_QUERY's counters, end - start


async def _waits_in(stack: Stack, window: Window) -> Waits:
    """What PostgreSQL's busy backends wait on through the measured window, sampled every 10 ms,
    by the application_name of their connection (role, wait event or "cpu", the statement's
    start), and what it wrote meanwhile."""
    waits = Waits()
    conn = await connect(stack.database_url)
    try:
        await asyncio.sleep(max(0.0, window.start - time.monotonic()))
        before = dict(await conn.fetchrow(WAL_QUERY))
        while time.monotonic() < window.end:
            for row in await conn.fetch(WAITS_QUERY):
                waits.samples[(row["role"], row["wait"], row["query"])] += 1
            await asyncio.sleep(WAITS_POLL)
        after = dict(await conn.fetchrow(WAL_QUERY))
        waits.wal = {key: float(after[key] - before[key]) for key in before}
    finally:
        await conn.close()
    return waits


async def measure_phase(
    stack: Stack,
    endpoint: Endpoint,
    requests: list[bytes],
    args: argparse.Namespace,
    flood_spec: FloodSpec | None,
) -> Phase:
    others = await settle(stack)
    window = Window(time.monotonic() + LOAD_START_ALLOWANCE, args.warmup, args.seconds)
    async with contextlib.AsyncExitStack() as phase:
        flood = (
            await phase.enter_async_context(flooding(flood_spec, stack.pids))
            if flood_spec
            else None
        )
        cpu = asyncio.create_task(_cpu_in(stack, window))
        waits = asyncio.create_task(_waits_in(stack, window)) if args.waits else None
        try:
            tally = await run_load(endpoint, requests, window, args.connections, rate=args.rate)
            shares = await cpu
            sampled = await waits if waits else None
        finally:
            cpu.cancel()
            if waits:
                waits.cancel()
    stats = summarize(tally, args.seconds, shares.get("serve"))
    return Phase(stats, shares, flood, others, sampled)


# --- the report ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    baseline: list[Phase] = field(default_factory=list)
    flood: list[Phase] = field(default_factory=list)
    outbound: dict[str, int] = field(default_factory=dict)
    serve_cpu: int | None = None  # the CPU the web process was pinned to

    def ratios(self) -> list[float]:
        """p99(flood)/p99(baseline) of each round; infinite when nothing was answered in the
        flood window (the worst case, not a fast one)."""
        return [
            f.stats.p99_ms / b.stats.p99_ms if f.stats.requests else math.inf
            for b, f in zip(self.baseline, self.flood, strict=True)
            if b.stats.p99_ms > 0
        ]


def _median_phase(phases: list[Phase]) -> Phase:
    chosen = median_run([p.stats for p in phases])
    return next(p for p in phases if p.stats is chosen)


def _flood_lines(total: FloodTally) -> list[str]:
    lines = [f"flood, all rounds ({total.seconds:.0f} s of flooding):"]
    for kind, sent in total.sent.items():
        answers = total.answers.get(kind, Counter())
        detail = ", ".join(f"{status}: {n}" for status, n in sorted(answers.items()))
        lines.append(
            f"  {kind:<22} {sent:>6} sent ({sent / max(total.seconds, 1e-9):.1f}/s); "
            f"answers {detail or 'none'}; unanswered at phase end {total.unfinished[kind]}"
        )
    return lines


def _cpu_line(name: str, cpu: dict[str, float]) -> str:
    shown = {k: v for k, v in cpu.items() if k != "machine"}
    parts = ", ".join(f"{role} {share:.2f}" for role, share in shown.items())
    return f"  {name:<8}: {parts}; machine {cpu.get('machine', 0.0):.2f} of {os.cpu_count()}"


WAITS_SHOWN = 12


def _waits_lines(name: str, phases: list[Phase]) -> list[str]:
    """The commonest (process, wait, statement) samples of every round's phase together, and
    what PostgreSQL wrote in them, a second."""
    total: Counter[tuple[str, str, str]] = Counter()
    wal: Counter[str] = Counter()
    seconds = 0.0
    for phase in phases:
        if phase.waits is not None:
            total.update(phase.waits.samples)
            wal.update(phase.waits.wal)
            seconds += phase.stats.seconds
    count = sum(total.values())
    per_second = {key: value / seconds for key, value in wal.items()} if seconds else {}
    lines = [
        f"postgres, {name}: WAL {per_second.get('wal_bytes', 0) / MB:.1f} MB/s in "
        f"{per_second.get('wal_records', 0):.0f} records/s ({per_second.get('wal_fpi', 0):.0f} "
        f"full pages), {per_second.get('wal_sync', 0):.0f} WAL syncs/s, "
        f"{per_second.get('buffers_written', 0):.0f} data pages written/s, "
        f"{wal.get('checkpoints', 0):.0f} checkpoint(s)",
        f"postgres backends busy, {name} ({count} samples every {WAITS_POLL * 1000:g} ms):",
    ]
    for (role, wait, query), n in total.most_common(WAITS_SHOWN):
        lines.append(f"  {n:>6} {role:<16} {wait:<22} {query}")
    return lines


def _placement(run: Run) -> str:
    others = statistics.median(p.others for p in run.baseline + run.flood)
    where = (
        f"web process pinned to CPU {run.serve_cpu}, everything else this bench runs on the other "
        f"CPU(s) of {os.cpu_count()}"
        if run.serve_cpu is not None
        else f"nothing pinned ({os.cpu_count()} CPU(s))"
    )
    return f"{where}; work not ours on the machine as phases began: median {others:.2f} cores"


LEGEND = (
    "the quiet tenant's signed corpus deliveries to POST /webhook; req/s counts 200s; p50/p99 "
    "from writing a request to reading its response; server cpu: serve's share of one core"
)


def render_report(run: Run, args: argparse.Namespace) -> list[str]:
    base, flood = _median_phase(run.baseline), _median_phase(run.flood)
    table = render_table([Outcome("baseline", base.stats), Outcome("flood", flood.stats)])
    ratios = run.ratios()
    ratio = statistics.median(ratios) if ratios else None
    met = ratio is not None and ratio < TARGET_RATIO
    total = FloodTally()
    for phase in run.flood:
        assert phase.flood is not None
        total.merge(phase.flood)
    rounds = ", ".join(
        f"{b.stats.p99_ms:.1f} -> {f.stats.p99_ms:.1f}"
        for b, f in zip(run.baseline, run.flood, strict=True)
    )
    lines = ["", *table, LEGEND, ""]
    for name, phase in (("baseline", base), ("flood", flood)):
        if phase.stats.errors:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(phase.stats.outcomes.items()))
            lines.append(f"{name} responses: {detail}")
    lines += [
        f"p99 ms per round, baseline -> flood: {rounds}",
        _placement(run),
        "cpu in the measured window of the median rounds, in cores (flood: the flood's client; "
        "other: the rest of the machine, the load generator included):",
        _cpu_line("baseline", base.cpu),
        _cpu_line("flood", flood.cpu),
        *_flood_lines(total),
        *(_waits_lines("baseline", run.baseline) if args.waits else []),
        *(_waits_lines("flood", run.flood) if args.waits else []),
        f"noisy outbound messages after the run: {run.outbound}",
        "",
        f"p99(flood)/p99(baseline): {'-' if ratio is None else f'{ratio:.2f}'} "
        f"(median of {len(ratios)} round(s): {', '.join(f'{r:.2f}' for r in ratios)})",
        f"target (p99 with the flood under {TARGET_RATIO:g}x without): "
        f"{'MET' if met else 'NOT MET'}",
    ]
    summary = {
        "bench": "noisy",
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "floods": args.flood or list(FLOODS),
        "serve_cpu": run.serve_cpu,
        "others": {
            "baseline": [p.others for p in run.baseline],
            "flood": [p.others for p in run.flood],
        },
        "baseline": base.stats.summary(),
        "flood": flood.stats.summary(),
        "p99_ratio": None if ratio is None or math.isinf(ratio) else round(ratio, 3),
        "p99_ratios": [None if math.isinf(r) else round(r, 3) for r in ratios],
        "target_met": met,
        "flood_sent": dict(total.sent),
        "flood_answers": {k: dict(v) for k, v in total.answers.items()},
        "flood_unanswered": dict(total.unfinished),
        "cpu": {"baseline": base.cpu, "flood": flood.cpu},
    }
    return [*lines, json.dumps(summary)]


# --- the run ------------------------------------------------------------------------------------


async def _outbound(database_url: str, tenant: Tenant) -> dict[str, int]:
    conn = await connect(database_url)
    try:
        return await status_counts(conn, tenant)
    finally:
        await conn.close()


async def _rounds(noisy: Noisy, tenants: Tenants, args: argparse.Namespace) -> Run:
    stack = noisy.stack
    port = int(stack.api.rsplit(":", 1)[1])
    endpoint = Endpoint(HOST, port, WEBHOOK_PATH)
    bodies = read_bodies()
    if not bodies:
        raise StartFailed("the webhooks/ corpus is empty")
    requests = build_requests(endpoint, bodies, stack.app_secret)
    run = Run(serve_cpu=noisy.serve_cpu)
    for round_ in range(1, args.rounds + 1):
        spec = FloodSpec(
            port,
            tenants.noisy_keys,
            noisy.front_port,
            args.flood,
            first_number=round_ * FLOOD_NUMBERS,
            low_priority=not args.same_priority,
        )
        for name, flood in (("baseline", None), ("flood", spec)):
            progress(
                "noisy",
                f"round {round_}/{args.rounds}, {name}: {args.warmup:g} s warmup + "
                f"{args.seconds:g} s at {args.connections} connections",
            )
            phase = await measure_phase(stack, endpoint, requests, args, flood)
            (run.flood if flood else run.baseline).append(phase)
            progress(
                "noisy",
                f"  p50 {phase.stats.p50_ms:.1f} ms, p99 {phase.stats.p99_ms:.1f} ms, "
                f"{phase.stats.throughput:.0f} req/s",
            )
    run.outbound = await _outbound(stack.database_url, tenants.noisy)
    return run


def _check_args(args: argparse.Namespace) -> str | None:
    problem = check_load_args(args)
    if problem:
        return problem
    if args.rate is not None and args.rate <= 0:
        return "--rate must be positive"
    unknown = [name for name in args.flood or [] if name not in FLOODS]
    if unknown:
        return f"--flood: unknown {', '.join(unknown)}; choose from {', '.join(FLOODS)}"
    return None


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, workdir: Path) -> Report:
    serve_cpu = stack.enter_context(serve_core())
    noisy = await start_noisy_stack(stack, workdir, serve_cpu, not args.same_priority)
    progress("noisy", "seeding the quiet and the noisy tenant")
    tenants = await seed(noisy)
    run = await _rounds(noisy, tenants, args)
    broken = any(p.stats.ok == 0 for p in run.baseline + run.flood)
    return Report(render_report(run, args), 1 if broken else 0)


async def run_noisy_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        say("noisy", problem)
        return 2
    say(
        "noisy",
        f"{args.connections} connections of quiet webhooks"
        + (f" at {args.rate:g}/s, paced" if args.rate else "")
        + ", "
        f"{args.rounds} round(s) of baseline then flood, {args.warmup:g} s warmup + "
        f"{args.seconds:g} s each (the median round is shown)",
    )
    return await run_bench("noisy", functools.partial(_run, args))


def main(argv: list[str] | None = None) -> None:
    """`python -m wa_cloud.bench.noisy --port N`: the slow front subprocess."""
    parser = argparse.ArgumentParser(prog="python -m wa_cloud.bench.noisy")
    parser.add_argument("--port", type=int, required=True)
    serve_slow_front(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()

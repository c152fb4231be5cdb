"""`wa-cloud bench send`: outbound pacing against the sandbox Meta, on loopback.

docs/design.md, "Performance targets": every number's achieved rate within 2 % of its configured
throughput and no 130429 from the emulator, with 10 numbers at 80/s and one at 1,000/s at once.

The run, all subprocesses of this one: an embedded PostgreSQL with the migrations; the sandbox
(`wa-cloud sandbox`), which enforces each number's throughput with 130429 exactly as it would in
the tests; our `wa-cloud serve` (with its in-process worker when `--workers 0`, else `--no-worker`
and N `wa-cloud worker` processes), its Graph base URL pointed at the sandbox.

Seeding goes through the public API where one exists (tenant, numbers) and into the sandbox
through its control API with the same tokens; the throughput is then written straight into
`numbers` (what `PATCH /v1/numbers/{id}` does). Every send is a template to a recipient of its
own: a template needs no open window on either side (no contacts rows, no 36,000
`/_sandbox/windows` calls, no window check in the claim), and a recipient per message means the
pair rate never binds, so only the number's throughput is measured.

The backlog is written behind a closed gate: each number's pacing row gets a next slot an hour
away before anything is queued. The sender only claims a number whose next slot is due, so
nothing leaves while the backlog is written, whichever enqueue path and whichever worker; one
UPDATE then opens every gate at once and the clock starts. The sandbox is sampled (`/_sandbox/
stats`) four times a second until the backlog drains; rates come from those samples, queue
latency from our database.

Enqueueing: `--enqueue sql` (the default) runs enqueue.py's own INSERT (Q.enqueue_message) with
the parameters enqueue.py builds, pipelined in batches: the 36,000 messages of the default run
take 3 to 7 s on the 2-core reference machine. `--enqueue api` posts each one to
`POST /v1/messages` over keep-alive connections: the honest path, but about 330 requests/s there,
so nearly two minutes for the same backlog. Either way the rows are alike, and the gate makes the
pace of the enqueue irrelevant to what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from wa_cloud.bench.harness import (
    HOST,
    Launch,
    Report,
    StartFailed,
    embedded_database,
    free_port,
    local_server,
    logging_process,
    progress,
    run_bench,
    say,
    serve_launch,
    wa_cloud_argv,
    wa_cloud_env,
)
from wa_cloud.bench.load import read_response, request_head
from wa_cloud.bench.stats import format_or_dash
from wa_cloud.db.pool import connect
from wa_cloud.db.queries import Q
from wa_cloud.inbound.parse import message_text
from wa_cloud.outbox.compose import compose

WABA_ID = "102290129340398"
TEMPLATE_NAME = "bench_notice"
TEMPLATE_LANGUAGE = "en_US"
TEMPLATE_BODY = "Your order has shipped."
GATE_CLOSED = "1 hour"  # far beyond any run: the sender cannot reach a slot that far off
SAMPLE_SECONDS = 0.25
DB_CHECK_SECONDS = 1.0
# The steady part of a number's run: its span less this share at each end (the first claims
# and the tail are not the pace).
STEADY_TRIM = 0.1
MIN_STEADY_SECONDS = 1.0
TARGET_DEVIATION = 0.02  # docs/design.md: within 2 % of the configured throughput
SQL_BATCH = 2000
HTTP_TIMEOUT = 30.0


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedNumber:
    phone_number_id: str
    display: str
    token: str
    rate: int
    messages: int

    def recipients(self, index: int) -> Iterator[str]:
        # One recipient per message: the pair rate (one per 6 s) never binds.
        for i in range(self.messages):
            yield f"44{index:03d}{i:08d}"


def plan_numbers(args: argparse.Namespace) -> list[PlannedNumber]:
    rates = [args.rate] * args.numbers + ([args.fast_rate] if args.fast_rate else [])
    planned = []
    for index, rate in enumerate(rates):
        pnid = f"10654035{index:07d}"
        planned.append(
            PlannedNumber(
                phone_number_id=pnid,
                display=f"1555{index:07d}",
                token="EAAG-bench-" + secrets.token_urlsafe(16),
                rate=rate,
                messages=round(rate * args.seconds),
            )
        )
    return planned


def send_request(
    phone_number_id: str, recipient: str, template: str = TEMPLATE_NAME
) -> dict[str, Any]:
    """What a client would POST to /v1/messages for one template send."""
    return {
        "from": phone_number_id,
        "to": recipient,
        "type": "template",
        "template": {"name": template, "language": {"code": TEMPLATE_LANGUAGE}},
    }


# --- processes ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Stack:
    database_url: str
    api: str
    sandbox: str
    admin_token: str
    app_secret: str  # webhooks to our API are signed with it
    pids: dict[str, list[int]] = field(default_factory=dict)
    pgdata: Path | None = None  # where harness.embedded_database keeps it: workdir / "pg"
    env: dict[str, str] = field(default_factory=dict)  # every process's, for workers started later

    @contextlib.asynccontextmanager
    async def clients(self) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
        """HTTP clients of our API and of the sandbox's control API."""
        async with (
            httpx.AsyncClient(base_url=self.api, timeout=HTTP_TIMEOUT) as api,
            httpx.AsyncClient(base_url=self.sandbox, timeout=HTTP_TIMEOUT) as sandbox,
        ):
            yield api, sandbox


def _environment(database_url: str, sandbox_url: str, workdir: Path) -> dict[str, str]:
    return {
        # The sandbox signs its webhooks with the app secret too.
        **wa_cloud_env(database_url, secrets.token_hex(16)),
        "WA_GRAPH_BASE_URL": sandbox_url,
        # `wa-cloud sandbox` keeps dev secrets in the data dir: keep them in our temp dir.
        "WA_DATA_DIR": str(workdir / "data"),
    }


def _sandbox_launch(env: dict[str, str], port: int, webhook_url: str) -> Launch:
    argv = ["sandbox", "--host", HOST, "--port", str(port), "--webhook-url", webhook_url]
    return Launch("sandbox", wa_cloud_argv(*argv), env, port, "/_sandbox/numbers", 200)


def worker_process(
    env: dict[str, str], index: int, workdir: Path
) -> contextlib.AbstractAsyncContextManager[int]:
    return logging_process(
        f"worker-{index}", wa_cloud_argv("worker"), env, workdir, b'"worker started"'
    )


async def start_stack(
    stack: contextlib.AsyncExitStack,
    workdir: Path,
    bench: str,
    *,
    webhooks: bool,
    workers: int,
    env: dict[str, str] | None = None,
    serve_graph_url: str | None = None,
    serve_worker: bool | None = None,
) -> Stack:
    """An embedded PostgreSQL with the migrations, the sandbox Meta, `wa-cloud serve` (with its
    in-process worker when `serve_worker`, by default when `workers` is 0, else `--no-worker`)
    and `workers` worker processes. `env` is added to every process's environment; serve calls
    Graph at `serve_graph_url` when given, every other process at the sandbox."""
    progress(bench, "starting embedded PostgreSQL and migrations")
    database_url = await stack.enter_async_context(embedded_database(workdir))
    api_port, sandbox_port = free_port(), free_port()
    api, sandbox = f"http://{HOST}:{api_port}", f"http://{HOST}:{sandbox_port}"
    env = {**_environment(database_url, sandbox, workdir), **(env or {})}
    # Status webhooks are off unless asked: 3 per message would take the CPU the sender needs.
    webhook_url = f"{api}/webhook" if webhooks else ""
    progress(bench, f"starting the sandbox Meta (webhooks {'on' if webhooks else 'off'})")
    sandbox_pid = await stack.enter_async_context(
        local_server(_sandbox_launch(env, sandbox_port, webhook_url), workdir)
    )
    in_process = workers == 0 if serve_worker is None else serve_worker
    mode = "with its in-process worker" if in_process else "--no-worker"
    progress(bench, f"starting wa-cloud serve {mode} + {workers} worker(s)")
    serve_env = env if serve_graph_url is None else {**env, "WA_GRAPH_BASE_URL": serve_graph_url}
    serve_pid = await stack.enter_async_context(
        local_server(
            serve_launch("serve", serve_env, api_port, in_process_worker=in_process), workdir
        )
    )
    worker_pids = [
        await stack.enter_async_context(worker_process(env, i, workdir)) for i in range(workers)
    ]
    pids = {"sandbox": [sandbox_pid], "serve": [serve_pid], "worker": worker_pids}
    return Stack(
        database_url,
        api,
        sandbox,
        env["WA_ADMIN_TOKEN"],
        env["WA_APP_SECRET"],
        pids,
        workdir / "pg",
        env,
    )


# --- seeding ------------------------------------------------------------------------------------


def checked(
    response: httpx.Response, what: str, expect: tuple[int, ...] = (200, 201)
) -> dict[str, Any]:
    if response.status_code not in expect:
        raise StartFailed(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    body = response.json()
    assert isinstance(body, dict)
    return body


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    api_key: str


async def seed(
    stack: Stack, api: httpx.AsyncClient, sandbox: httpx.AsyncClient, plan: list[PlannedNumber]
) -> Tenant:
    tenant = await create_tenant(api, stack.admin_token, "Bench Co")
    for number in plan:
        await seed_number(api, sandbox, tenant, number)
    await seed_template(sandbox, WABA_ID)
    return tenant


async def create_tenant(api: httpx.AsyncClient, admin_token: str, name: str) -> Tenant:
    admin = {"authorization": f"Bearer {admin_token}"}
    created = await api.post("/v1/admin/tenants", json={"name": name}, headers=admin)
    body = checked(created, f"tenant {name}")
    return Tenant(body["id"], body["api_key"])


async def seed_number(
    api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    tenant: Tenant,
    number: PlannedNumber,
    waba_id: str = WABA_ID,
) -> None:
    """The number at the sandbox Meta (with its throughput) and in the tenant's account."""
    common = {
        "phone_number_id": number.phone_number_id,
        "waba_id": waba_id,
        "access_token": number.token,
        "display_phone_number": number.display,
    }
    meta = {**common, "throughput_mps": number.rate, "registered": True}
    checked(await sandbox.post("/_sandbox/numbers", json=meta), "sandbox number")
    ours = await api.post(
        "/v1/numbers", json=common, headers={"authorization": f"Bearer {tenant.api_key}"}
    )
    checked(ours, f"POST /v1/numbers {number.phone_number_id}")


async def seed_template(sandbox: httpx.AsyncClient, waba_id: str) -> None:
    template = {
        "waba_id": waba_id,
        "name": TEMPLATE_NAME,
        "language": TEMPLATE_LANGUAGE,
        "body": TEMPLATE_BODY,  # no placeholders: the send needs no parameters
    }
    checked(await sandbox.post("/_sandbox/templates", json=template), "sandbox template")


async def set_rates_and_close_gates(conn: asyncpg.Connection, plan: list[PlannedNumber]) -> None:
    """Throughput as PATCH would set it, and every number's gate shut before anything queues."""
    pnids = [n.phone_number_id for n in plan]
    async with conn.transaction():
        await conn.execute(
            "UPDATE numbers SET throughput_mps = u.rate, updated_at = now()"
            " FROM unnest($1::text[], $2::int[]) AS u(id, rate) WHERE phone_number_id = u.id",
            pnids,
            [n.rate for n in plan],
        )
        await conn.execute(
            "INSERT INTO pacing (phone_number_id, next_slot)"
            f" SELECT id, now() + interval '{GATE_CLOSED}' FROM unnest($1::text[]) AS id"
            " ON CONFLICT (phone_number_id) DO UPDATE SET next_slot = excluded.next_slot",
            pnids,
        )


async def open_gates(conn: asyncpg.Connection, plan: list[PlannedNumber]) -> float:
    """Every number may send from now on; the sender is woken as an enqueue wakes it."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE pacing SET next_slot = now(), factor = 1.0 WHERE phone_number_id = ANY($1)",
            [n.phone_number_id for n in plan],
        )
        await conn.execute(Q.notify_outbox, "")
    return time.time()


# --- enqueueing the backlog ---------------------------------------------------------------------


def _enqueue_rows(tenant_id: str, index: int, number: PlannedNumber) -> Iterator[tuple[Any, ...]]:
    """Q.enqueue_message's parameters, built as enqueue.enqueue builds them."""
    for recipient in number.recipients(index):
        request = send_request(number.phone_number_id, recipient)
        composed = compose(request)
        yield (
            tenant_id,
            number.phone_number_id,
            None,  # contact: none needed for a template
            composed.kind,
            message_text(composed.body),
            request,
            composed.body,
            composed.recipient,
            None,  # idempotency key
            None,  # fallback template
            None,  # context wamid
            "human",
            None,  # reply job
        )


async def enqueue_sql(conn: asyncpg.Connection, tenant: Tenant, plan: list[PlannedNumber]) -> int:
    """The very INSERT enqueue.py runs, pipelined (executemany) in batches, then the pacing rows
    (already there: the gates) and one NOTIFY, as enqueue.py does per message."""
    total = 0
    for index, number in enumerate(plan):
        rows = list(_enqueue_rows(tenant.id, index, number))
        for start in range(0, len(rows), SQL_BATCH):
            async with conn.transaction():
                await conn.executemany(Q.enqueue_message, rows[start : start + SQL_BATCH])
        await conn.execute(Q.ensure_pacing, number.phone_number_id)
        total += len(rows)
    await conn.execute(Q.notify_outbox, "")
    return total


@dataclass(slots=True)
class PostTally:
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str | None = None


def api_post(authority: str, path: str, api_key: str, document: dict[str, Any]) -> bytes:
    """A JSON POST to our API as request bytes, built ahead so a connection loop only writes."""
    body = json.dumps(document).encode()
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    return request_head("POST", path, authority, headers) + body


async def _post_loop(port: int, requests: Iterator[bytes], tally: PostTally, ok: int) -> None:
    """One keep-alive connection posting until the shared iterator is exhausted."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for request in requests:
            writer.write(request)
            status, _, body = await read_response(reader)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status != ok and tally.first_error is None:
                tally.first_error = f"HTTP {status}: {body[:300].decode(errors='replace')}"
    finally:
        writer.close()


async def enqueue_api(
    stack: Stack, tenant: Tenant, plan: list[PlannedNumber], connections: int
) -> PostTally:
    """Every send through POST /v1/messages, over `connections` keep-alive connections, with
    pre-built request bytes so the client is never the slow side."""
    # Interleaved across numbers, as concurrent clients of different numbers would post.
    authority = stack.api.removeprefix("http://")
    per_number = [
        [
            api_post(authority, "/v1/messages", tenant.api_key, send_request(n.phone_number_id, r))
            for r in n.recipients(i)
        ]
        for i, n in enumerate(plan)
    ]
    ordered = [req for group in _interleave(per_number) for req in group]
    return await post_all(int(stack.api.rsplit(":", 1)[1]), ordered, connections)


async def post_all(
    port: int, requests: Iterable[bytes], connections: int, *, ok: int = 202
) -> PostTally:
    """Every request once, in order, over `connections` keep-alive connections that share one
    iterator; a status other than `ok` is tallied, the first one's body kept."""
    shared = iter(requests)
    tally = PostTally()
    await asyncio.gather(*(_post_loop(port, shared, tally, ok) for _ in range(connections)))
    return tally


def _interleave(groups: list[list[bytes]]) -> Iterator[list[bytes]]:
    longest = max((len(g) for g in groups), default=0)
    for i in range(longest):
        yield [g[i] for g in groups if i < len(g)]


# --- sampling the sandbox -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # the sandbox's clock (time.time()), read with the counts
    accepted: dict[str, int]


@dataclass(slots=True)
class Watch:
    samples: list[Sample] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)  # the last /_sandbox/stats numbers
    drained: bool = False
    timed_out: bool = False


async def _stats(sandbox: httpx.AsyncClient) -> tuple[float, dict[str, Any]]:
    document = checked(await sandbox.get("/_sandbox/stats"), "sandbox stats")
    return float(document["at"]), document["numbers"]


async def _left_in_queue(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM messages WHERE direction = 'out'"
            " AND status IN ('queued', 'sending')"
        )
    )


async def watch_until_drained(
    sandbox: httpx.AsyncClient, conn: asyncpg.Connection, expected: int, limit: float
) -> Watch:
    """Sample the sandbox until every message was accepted (or our queue is empty: refusals
    end a message too), or the time runs out."""
    watch = Watch()
    deadline = time.monotonic() + limit
    next_db_check = time.monotonic() + DB_CHECK_SECONDS
    while True:
        at, numbers = await _stats(sandbox)
        watch.samples.append(Sample(at, {p: int(s["accepted"]) for p, s in numbers.items()}))
        watch.last = numbers
        if sum(watch.samples[-1].accepted.values()) >= expected:
            watch.drained = True
            return watch
        if time.monotonic() >= next_db_check:
            next_db_check = time.monotonic() + DB_CHECK_SECONDS
            if await _left_in_queue(conn) == 0:
                watch.drained = True
                return watch
        if time.monotonic() > deadline:
            watch.timed_out = True
            return watch
        await asyncio.sleep(SAMPLE_SECONDS)


# --- CPU ----------------------------------------------------------------------------------------


def _postgres_pids(pgdata: Path | None) -> list[int]:
    """The postmaster and its backends: the first line of postmaster.pid names the former."""
    import psutil

    if pgdata is None:
        return []
    try:
        master = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
        return [master.pid, *(c.pid for c in master.children())]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def cpu_snapshot(stack: Stack) -> dict[str, dict[int, float]]:
    """CPU seconds so far per process, by role (postgres backends found afresh each time), and
    the whole machine's busy seconds under "machine" (pid 0): other work on a shared machine
    shows as the difference."""
    import psutil

    roles = {**stack.pids, "postgres": _postgres_pids(stack.pgdata)}
    snapshot: dict[str, dict[int, float]] = {}
    for role, pids in roles.items():
        snapshot[role] = {}
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                snapshot[role][pid] = times.user + times.system
    machine = psutil.cpu_times()
    snapshot["machine"] = {0: sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)}
    return snapshot


def cpu_shares(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
) -> dict[str, float]:
    """Cores used per role (1.0 = one core busy); a process born during the run counts from
    zero. "other" is what the machine did besides this bench's processes."""
    if seconds <= 0:
        return {}
    shares = {}
    for role, pids in after.items():
        used = sum(t - before.get(role, {}).get(pid, 0.0) for pid, t in pids.items())
        shares[role] = round(used / seconds, 2)
    ours = sum(v for k, v in shares.items() if k != "machine")
    shares["other"] = round(max(0.0, shares.get("machine", 0.0) - ours), 2)
    return shares


# --- figures ------------------------------------------------------------------------------------


def rate_between(samples: list[Sample], pnid: str, low: float, high: float) -> float | None:
    """Accepts per second over the samples inside [low, high]: the least-squares slope of the
    count against time, so the jitter of a single sample (a send a few ms late at one end)
    does not pass for a rate error the way a two-point difference would."""
    points = [(s.at, s.accepted.get(pnid, 0)) for s in samples if low <= s.at <= high]
    if len(points) < 3 or points[-1][0] - points[0][0] < MIN_STEADY_SECONDS:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_c = sum(c for _, c in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (c - mean_c) for t, c in points) / spread


def _steady_bounds(first: float, last: float) -> tuple[float, float]:
    trim = (last - first) * STEADY_TRIM
    return first + trim, last - trim


@dataclass(frozen=True, slots=True)
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class NumberResult:
    number: PlannedNumber
    accepted: int
    throughput_rejected: int
    pair_rejected: int
    overall: float | None  # (accepted - 1) / (last - first accept)
    steady: float | None
    while_fast: float | None  # a slow number's rate while the fast one was sending
    drain_seconds: float | None
    latency: Latency | None

    @property
    def deviation(self) -> float | None:
        """Relative deviation of the steady rate from the configured one."""
        rate = self.steady if self.steady is not None else self.overall
        return None if rate is None else rate / self.number.rate - 1


def _window(stats: dict[str, Any]) -> tuple[float, float] | None:
    first, last = stats.get("first_accept_at"), stats.get("last_accept_at")
    return None if first is None or last is None or last <= first else (first, last)


def number_result(
    number: PlannedNumber,
    watch: Watch,
    opened_at: float,
    fast_window: tuple[float, float] | None,
    latency: Latency | None,
) -> NumberResult:
    stats = watch.last.get(number.phone_number_id, {})
    accepted = int(stats.get("accepted", 0))
    span = _window(stats)
    overall = steady = while_fast = drain = None
    if span is not None:
        overall = (accepted - 1) / (span[1] - span[0])
        steady = rate_between(watch.samples, number.phone_number_id, *_steady_bounds(*span))
        drain = span[1] - opened_at
        if fast_window is not None:
            low, high = _steady_bounds(*span)
            while_fast = rate_between(
                watch.samples,
                number.phone_number_id,
                max(low, fast_window[0]),
                min(high, fast_window[1]),
            )
    return NumberResult(
        number=number,
        accepted=accepted,
        throughput_rejected=int(stats.get("throughput_rejected", 0)),
        pair_rejected=int(stats.get("pair_rate_rejected", 0)),
        overall=overall,
        steady=steady,
        while_fast=while_fast,
        drain_seconds=drain,
        latency=latency,
    )


LATENCY_SQL = """
SELECT phone_number_id,
       count(*) AS n,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY waited) AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY waited) AS p99,
       max(waited) AS worst
  FROM (SELECT phone_number_id,
               extract(epoch FROM accepted_at - greatest(created_at, $2::timestamptz)) AS waited
          FROM messages
         WHERE tenant_id = $1::uuid AND direction = 'out' AND accepted_at IS NOT NULL) AS w
 GROUP BY ROLLUP (phone_number_id)
"""


async def queue_latencies(
    conn: asyncpg.Connection, tenant: Tenant, opened_at: float
) -> dict[str | None, Latency]:
    """created_at -> accepted_at, counted from the gate opening for the preloaded backlog (it
    could not leave earlier); the None key holds all numbers together."""
    opened = datetime.fromtimestamp(opened_at, UTC)
    rows = await conn.fetch(LATENCY_SQL, tenant.id, opened)
    return {
        r["phone_number_id"]: Latency(
            float(r["p50"]) * 1000, float(r["p99"]) * 1000, float(r["worst"]) * 1000, r["n"]
        )
        for r in rows
        if r["n"]  # ROLLUP's total row exists even when nothing was accepted
    }


async def status_counts(conn: asyncpg.Connection, tenant: Tenant) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM messages WHERE tenant_id = $1::uuid"
        " AND direction = 'out' GROUP BY status ORDER BY status",
        tenant.id,
    )
    return {r["status"]: r["n"] for r in rows}


# --- the report ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    plan: list[PlannedNumber]
    results: list[NumberResult]
    enqueue: str
    enqueue_seconds: float
    enqueue_errors: dict[str, Any]
    watch: Watch
    drain_seconds: float | None
    latency: Latency | None
    statuses: dict[str, int]
    cpu: dict[str, float]
    workers: int


def render_table(results: list[NumberResult]) -> list[str]:
    columns = (
        "{:<16} {:>6} {:>7} {:>8} {:>10} {:>9} {:>7} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7}"
    )
    lines = [
        columns.format(
            "number",
            "target",
            "queued",
            "accepted",
            "overall/s",
            "steady/s",
            "dev %",
            "w/fast/s",
            "130429",
            "131056",
            "p50 ms",
            "p99 ms",
            "max ms",
            "drain s",
        )
    ]
    for r in results:
        lat = r.latency
        lines.append(
            columns.format(
                r.number.phone_number_id,
                r.number.rate,
                r.number.messages,
                r.accepted,
                format_or_dash(r.overall, ".2f"),
                format_or_dash(r.steady, ".2f"),
                format_or_dash(None if r.deviation is None else r.deviation * 100, "+.2f"),
                format_or_dash(r.while_fast, ".2f"),
                r.throughput_rejected,
                r.pair_rejected,
                format_or_dash(None if lat is None else lat.p50_ms, ".0f"),
                format_or_dash(None if lat is None else lat.p99_ms, ".0f"),
                format_or_dash(None if lat is None else lat.max_ms, ".0f"),
                format_or_dash(r.drain_seconds, ".2f"),
            )
        )
    return lines


LEGEND = (
    "overall/s: (accepted - 1) / (last - first accept) in the sandbox; steady/s: accepts per "
    "second over the middle 80 % of the number's sending (slope of sampled counts); "
    "dev %: its deviation from the target; w/fast/s: the same for an 80/s-class number while "
    "the fast number was sending; p50/p99/max: queue latency, created (or the gate opening) -> "
    "accepted_at; drain s: gate opening -> the number's last accept"
)


def verdicts(run: Run) -> dict[str, Any]:
    deviations = [r.deviation for r in run.results]
    spread = None if None in deviations else max(abs(d) for d in deviations if d is not None)
    slow = [r.while_fast / r.number.rate - 1 for r in run.results if r.while_fast is not None]
    slow_ok = all(abs(d) <= TARGET_DEVIATION for d in slow)
    rejected = sum(r.throughput_rejected for r in run.results)
    all_accepted = all(r.accepted >= r.number.messages for r in run.results)
    return {
        "spread_pct": None if spread is None else round(spread * 100, 3),
        "throughput_rejected": rejected,
        "pair_rejected": sum(r.pair_rejected for r in run.results),
        "slow_unaffected_by_fast": slow_ok if slow else None,
        "all_accepted": all_accepted,
        "target_met": spread is not None
        and spread <= TARGET_DEVIATION
        and rejected == 0
        and all_accepted
        and (slow_ok or not slow),
    }


def render_report(run: Run, args: argparse.Namespace) -> list[str]:
    found = verdicts(run)
    lines = ["", *render_table(run.results), LEGEND, ""]
    lat = run.latency
    drained = (
        f"NOT drained: timed out after {args.timeout:g} s (last accept at "
        f"{format_or_dash(run.drain_seconds, '.2f')} s)"
        if run.watch.timed_out
        else f"drained in {format_or_dash(run.drain_seconds, '.2f')} s"
    )
    lines.append(
        f"backlog: {sum(n.messages for n in run.plan)} messages enqueued via {run.enqueue} in "
        f"{run.enqueue_seconds:.1f} s; {drained}; statuses {run.statuses}"
    )
    if lat is not None:
        lines.append(
            f"queue latency, all numbers: p50 {lat.p50_ms:.0f} ms, p99 {lat.p99_ms:.0f} ms, "
            f"max {lat.max_ms:.0f} ms"
        )
    lines.append(
        f"cpu while draining, in cores (machine: everything on it; other: not our servers, "
        f"this bench included): {run.cpu}"
    )
    lines.append(
        f"target (rates within {TARGET_DEVIATION:.0%}, zero 130429, nothing left): "
        f"{'MET' if found['target_met'] else 'MISSED'} — spread {found['spread_pct']} %, "
        f"{found['throughput_rejected']} x 130429, {found['pair_rejected']} x 131056"
    )
    summary = {
        "bench": "send",
        "numbers": args.numbers,
        "rate": args.rate,
        "fast_rate": args.fast_rate,
        "seconds": args.seconds,
        "workers": run.workers,
        "webhooks": args.webhooks,
        "enqueue": run.enqueue,
        "enqueue_seconds": round(run.enqueue_seconds, 2),
        "enqueue_errors": run.enqueue_errors,
        "messages": sum(n.messages for n in run.plan),
        "accepted": sum(r.accepted for r in run.results),
        "drain_seconds": None if run.drain_seconds is None else round(run.drain_seconds, 2),
        "timed_out": run.watch.timed_out,
        "latency_ms": None
        if lat is None
        else {"p50": round(lat.p50_ms), "p99": round(lat.p99_ms), "max": round(lat.max_ms)},
        "rates": {
            r.number.phone_number_id: {
                "target": r.number.rate,
                "overall": None if r.overall is None else round(r.overall, 2),
                "steady": None if r.steady is None else round(r.steady, 2),
            }
            for r in run.results
        },
        "cpu": run.cpu,
        **found,
    }
    return [*lines, json.dumps(summary)]


# --- the run ------------------------------------------------------------------------------------


async def _enqueue(
    args: argparse.Namespace,
    stack: Stack,
    conn: asyncpg.Connection,
    tenant: Tenant,
    plan: list[PlannedNumber],
) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    if args.enqueue == "sql":
        await enqueue_sql(conn, tenant, plan)
        errors: dict[str, Any] = {}
    else:
        tally = await enqueue_api(stack, tenant, plan, args.connections)
        errors = {str(k): v for k, v in tally.statuses.items() if k != 202}
        if tally.first_error:
            errors["first"] = tally.first_error
    return time.monotonic() - started, errors


async def _measure(args: argparse.Namespace, stack: Stack) -> Run:
    plan = plan_numbers(args)
    async with stack.clients() as (api, sandbox):
        conn = await connect(stack.database_url)
        try:
            progress("send", f"seeding a tenant and {len(plan)} numbers")
            tenant = await seed(stack, api, sandbox, plan)
            await set_rates_and_close_gates(conn, plan)
            total = sum(n.messages for n in plan)
            progress("send", f"enqueueing {total} messages via {args.enqueue} (gates closed)")
            enqueue_seconds, errors = await _enqueue(args, stack, conn, tenant, plan)
            progress("send", f"enqueued in {enqueue_seconds:.1f} s; opening the gates")
            before = cpu_snapshot(stack)
            opened_at = await open_gates(conn, plan)
            watch = await watch_until_drained(sandbox, conn, total, args.timeout)
            elapsed = time.time() - opened_at
            cpu = cpu_shares(before, cpu_snapshot(stack), elapsed)
            # Let the last group commits of accepted_at land before reading them.
            await asyncio.sleep(0.5)
            latencies = await queue_latencies(conn, tenant, opened_at)
            statuses = await status_counts(conn, tenant)
        finally:
            await conn.close()
    return _assemble(
        args, plan, watch, opened_at, latencies, statuses, cpu, enqueue_seconds, errors
    )


def _assemble(
    args: argparse.Namespace,
    plan: list[PlannedNumber],
    watch: Watch,
    opened_at: float,
    latencies: dict[str | None, Latency],
    statuses: dict[str, int],
    cpu: dict[str, float],
    enqueue_seconds: float,
    errors: dict[str, Any],
) -> Run:
    fast = plan[-1] if args.fast_rate else None
    fast_window = _window(watch.last.get(fast.phone_number_id, {})) if fast else None
    results = [
        number_result(
            n,
            watch,
            opened_at,
            fast_window if n is not fast else None,
            latencies.get(n.phone_number_id),
        )
        for n in plan
    ]
    lasts = [r.drain_seconds for r in results if r.drain_seconds is not None]
    return Run(
        plan=plan,
        results=results,
        enqueue=args.enqueue,
        enqueue_seconds=enqueue_seconds,
        enqueue_errors=errors,
        watch=watch,
        drain_seconds=max(lasts) if lasts else None,
        latency=latencies.get(None),
        statuses=statuses,
        cpu=cpu,
        workers=args.workers,
    )


def _check_args(args: argparse.Namespace) -> str | None:
    if args.numbers < 0 or args.workers < 0 or args.connections < 1:
        return "--numbers and --workers must not be negative, --connections at least 1"
    if not 1 <= args.rate <= 1000 or not 0 <= args.fast_rate <= 1000:
        return "--rate must be 1 to 1000 and --fast-rate 0 (none) to 1000 (Meta's range)"
    if args.seconds <= 0 or args.numbers + (1 if args.fast_rate else 0) == 0:
        return "--seconds must be positive, and there must be at least one number"
    return None


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, workdir: Path) -> Report:
    running = await start_stack(
        stack, workdir, "send", webhooks=args.webhooks, workers=args.workers
    )
    return Report(render_report(await _measure(args, running), args))


async def run_send_bench(args: argparse.Namespace) -> int:
    if args.timeout is None:
        args.timeout = args.seconds * 3 + 30
    problem = _check_args(args)
    if problem:
        say("send", problem)
        return 2
    say(
        "send",
        f"{args.numbers} number(s) at {args.rate}/s"
        f"{f' + one at {args.fast_rate}/s' if args.fast_rate else ''}, {args.seconds:g} s of "
        f"backlog each, enqueue via {args.enqueue}, "
        f"{'in-process worker' if args.workers == 0 else f'{args.workers} worker process(es)'}",
    )
    return await run_bench("send", functools.partial(_run, args))

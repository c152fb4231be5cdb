"""`wa-cloud bench reply`: the assistant's overhead, from the inbound webhook to the Graph send.

docs/design.md, "Performance targets": with a model that answers instantly and no debounce,
inbound webhook to the outbound Graph request p50 under 25 ms, p99 under 100 ms.

The run, all on loopback: an embedded PostgreSQL with the migrations; the sandbox Meta and its
model fakes in this process, on this process's event loop (status webhooks off), behind a
recorder that notes the moment each Graph `POST /{phone_number_id}/messages` and each model
call reaches it; the service as a production deployment runs it (the Procfile's
`wa-cloud serve --no-worker` and `--workers` `wa-cloud worker`, one by default), its Graph
base URL and `OPENAI_BASE_URL` the sandbox, `WA_AI_MODEL=echo` (the fake that answers at once
with the customer's text).

Seeding goes through the public API: a tenant, its number(s) registered at the sandbox and
through `POST /v1/numbers` at `--throughput` messages a second (`PATCH`), the assistant on with
`PUT /v1/numbers/{id}/bot {"debounce_seconds": 0}`, and the credits every reply costs
(`POST /v1/admin/tenants/{id}/credits`).

Each round, `--conversations` customers write one text message each at once: one keep-alive
connection per customer is opened beforehand, then every signed webhook is written to
`POST /webhook` (the real receiver) in one go (or, with `--spread S`, evenly over S seconds: a
steady rate instead of a burst), t0 read just before each write. t1 is when the
sandbox got the `"type": "text"` send to that customer (the mark-read call, `"status": "read"`,
is not it). Both clocks are this process's `time.perf_counter()`. Every conversation must be
answered exactly once, with its own text echoed: a missing or second answer fails the run.
Round 1 is each customer's first message; later rounds continue the same conversations.

Along the way, per conversation: the webhook's answer, the mark-read call (the reply job was
claimed and its context read), the model call (its history read), and from the database
(PostgreSQL's clock is this machine's wall clock, converted to ours) the delivery's commit,
its indexing, the reply job's finish and the outbox's dispatch mark. They give the breakdown.

A number sends at most `--throughput` messages a second (Meta's limit, which the sender paces
to): k conversations on one number cannot all leave before (k - 1) / throughput seconds.
`--numbers` spreads the conversations over more numbers of the tenant; the report shows that
floor beside the figures.

The round's conversations are answered by one tenant's assistant: the worker answers at most
`MAX_IN_FLIGHT` reply jobs at once, and claims none for a tenant that has `MAX_PER_TENANT` in
flight (ai/replies.py); the summary names both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from wa_cloud.ai.replies import MAX_IN_FLIGHT, MAX_PER_TENANT
from wa_cloud.bench.harness import (
    HOST,
    UVICORN_SETTINGS,
    WEBHOOK_PATH,
    Report,
    StartFailed,
    embedded_database,
    free_port,
    local_server,
    print_logs,
    progress,
    run_bench,
    say,
    serve_launch,
    wa_cloud_env,
)
from wa_cloud.bench.load import Endpoint, KeepAlive, build_requests
from wa_cloud.bench.send import (
    WABA_ID,
    PlannedNumber,
    Stack,
    Tenant,
    checked,
    cpu_shares,
    cpu_snapshot,
    create_tenant,
    seed_number,
    worker_process,
)
from wa_cloud.bench.stats import format_or_dash, percentile
from wa_cloud.db.pool import connect
from wa_cloud.sandbox import SandboxConfig, create_sandbox
from wa_cloud.sandbox.corpus import text_message

# docs/design.md, "Performance targets".
TARGET_P50_MS = 25.0
TARGET_P99_MS = 100.0

ROUND_LIMIT = 30.0  # every conversation of a round answered within this, or the run fails
# After the last answer of a round: a second answer to anyone would come within this.
DUPLICATE_GRACE = 1.0
# Between opening the round's connections and writing to them: the web process has accepted
# them all, so no request waits behind another's accept.
CONNECT_SETTLE = 0.5
MAX_CONVERSATIONS = 1000
MAX_WORKERS = 8
MAX_SPREAD = 60.0
# Each round writes once more to the same customers; our pair pacing lets a quiet recipient get
# 10 messages back to back, and the warm-up customers are others.
MAX_ROUNDS = 8
MESSAGE = "reply-bench {round} {customer}"
MESSAGE_PATTERN = re.compile(rb"reply-bench (\d+) (\d+)")
GRAPH_SEND = re.compile(r"^/v\d+\.\d+/(\d+)/messages$")
MODEL_PATH = "/openai/v1/chat/completions"


# --- the sandbox, recorded ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # time.perf_counter() as the request reached the sandbox app
    path: str
    body: bytes


@dataclass(slots=True)
class Recorder:
    """An ASGI wrapper of the sandbox: each Graph send and each model call, with the moment it
    arrived (the rest passes through untouched). It also counts this round's text sends, so the
    round ends as the last expected one arrives."""

    app: Any
    arrivals: list[Arrival] = field(default_factory=list)
    awaited: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, customers: list[str]) -> None:
        self.awaited, self.answered = set(customers), set()
        self.all_answered.clear()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        watched = scope["type"] == "http" and scope["method"] == "POST"
        if not (watched and (GRAPH_SEND.match(path) or path == MODEL_PATH)):
            await self.app(scope, receive, send)
            return
        at = time.perf_counter()
        chunks: list[bytes] = []

        async def keeping() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        try:
            await self.app(scope, keeping, send)
        finally:
            self._note(Arrival(at, path, b"".join(chunks)))

    def _note(self, arrival: Arrival) -> None:
        self.arrivals.append(arrival)
        if arrival.path == MODEL_PATH:
            return
        body = _json(arrival.body)
        to = body.get("to")
        if body.get("type") == "text" and to in self.awaited:
            self.answered.add(to)
            if self.answered >= self.awaited:
                self.all_answered.set()

    def take(self) -> list[Arrival]:
        taken, self.arrivals = self.arrivals, []
        return taken


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _server(app: Any, port: int) -> Any:
    """uvicorn on this process's loop; SIGTERM and Ctrl-C stay the bench's (run_bench's)."""
    import uvicorn

    class Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Quiet(uvicorn.Config(app, port=port, lifespan="on", **UVICORN_SETTINGS))


@contextlib.asynccontextmanager
async def sandbox_here(recorder: Recorder, port: int) -> AsyncIterator[None]:
    """The recorded sandbox served on `port` by this process until the block ends."""
    server = _server(recorder, port)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if serving.done():
                    raise StartFailed(f"the sandbox did not start on port {port}")
                await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 10)


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conversation:
    customer: str  # the wa_id
    number: PlannedNumber


def plan_numbers(count: int, throughput: int) -> list[PlannedNumber]:
    return [
        PlannedNumber(
            phone_number_id=f"10654036{i:07d}",
            display=f"1555{i + 200:07d}",
            token="EAAG-reply-" + secrets.token_urlsafe(16),
            rate=throughput,
            messages=0,
        )
        for i in range(count)
    ]


def conversations(numbers: list[PlannedNumber], count: int, prefix: str) -> list[Conversation]:
    """`count` customers, dealt round robin over the numbers."""
    return [Conversation(f"{prefix}{i:07d}", numbers[i % len(numbers)]) for i in range(count)]


def pacing_floor(numbers: int, count: int, throughput: int) -> list[float]:
    """Seconds each conversation waits at least for its number's send slot, sorted: the i-th
    reply of a number leaves i / throughput after the first."""
    per_number = [count // numbers + (1 if i < count % numbers else 0) for i in range(numbers)]
    return sorted(i / throughput for k in per_number for i in range(k))


# --- the service --------------------------------------------------------------------------------


@dataclass(slots=True)
class Running:
    stack: Stack
    recorder: Recorder
    endpoint: Endpoint
    numbers: list[PlannedNumber]


def deployment(workers: int) -> str:
    return f"wa-cloud serve --no-worker + {workers} wa-cloud worker(s)"


def _environment(database_url: str, sandbox: str, workdir: Path) -> dict[str, str]:
    return {
        **wa_cloud_env(database_url, secrets.token_hex(16)),
        "WA_GRAPH_BASE_URL": sandbox,
        "OPENAI_BASE_URL": f"{sandbox}/openai/v1",
        "OPENAI_API_KEY": "sk-bench-" + secrets.token_urlsafe(12),
        "WA_AI_MODEL": "echo",
        "WA_DATA_DIR": str(workdir / "data"),
        # Seeding makes 3 API calls a number: many numbers would meet the per-key limit, which
        # guards the API only (the webhooks measured here never pass it).
        "WA_API_RATE_PER_SECOND": "1000",
        "WA_API_RATE_BURST": "2000",
    }


async def start(
    stack: contextlib.AsyncExitStack, workdir: Path, workers: int
) -> tuple[Stack, Recorder]:
    progress("reply", "starting embedded PostgreSQL and migrations")
    database_url = await stack.enter_async_context(embedded_database(workdir))
    api_port, sandbox_port = free_port(), free_port()
    api, sandbox = f"http://{HOST}:{api_port}", f"http://{HOST}:{sandbox_port}"
    progress("reply", "starting the sandbox Meta and models in this process (webhooks off)")
    recorder = Recorder(create_sandbox(SandboxConfig(webhook_url=None)))
    await stack.enter_async_context(sandbox_here(recorder, sandbox_port))
    env = _environment(database_url, sandbox, workdir)
    progress("reply", f"starting {deployment(workers)} (the Procfile's processes)")
    launch = serve_launch("serve", env, api_port, in_process_worker=False)
    serve_pid = await stack.enter_async_context(local_server(launch, workdir))
    worker_pids = [
        await stack.enter_async_context(worker_process(env, i, workdir)) for i in range(workers)
    ]
    pids = {"bench": [os.getpid()], "serve": [serve_pid], "worker": worker_pids}
    running = Stack(
        database_url=database_url,
        api=api,
        sandbox=sandbox,
        admin_token=env["WA_ADMIN_TOKEN"],
        app_secret=env["WA_APP_SECRET"],
        pids=pids,
        pgdata=workdir / "pg",  # where embedded_database keeps it
        env=env,
    )
    return running, recorder


async def seed(stack: Stack, numbers: list[PlannedNumber], replies: int) -> Tenant:
    """A tenant with the numbers, their assistant on (no debounce) and credits for every reply."""
    async with stack.clients() as (api, sandbox):
        tenant = await create_tenant(api, stack.admin_token, "Reply Co")
        key = {"authorization": f"Bearer {tenant.api_key}"}
        per_reply = 0
        for number in numbers:
            await seed_number(api, sandbox, tenant, number, WABA_ID)
            pnid = number.phone_number_id
            rate = {"throughput_mps": number.rate}
            checked(await api.patch(f"/v1/numbers/{pnid}", json=rate, headers=key), "throughput")
            bot = {"debounce_seconds": 0}
            shown = checked(await api.put(f"/v1/numbers/{pnid}/bot", json=bot, headers=key), "bot")
            per_reply = max(per_reply, int(shown["credits_per_reply"]))
        admin = {"authorization": f"Bearer {stack.admin_token}"}
        credits = {"amount": per_reply * replies + 100, "reason": "bench reply"}
        checked(
            await api.post(f"/v1/admin/tenants/{tenant.id}/credits", json=credits, headers=admin),
            "credits",
        )
    return tenant


# --- a round ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Timeline:
    """One conversation's moments, in seconds of time.perf_counter(); None: not seen."""

    customer: str
    wamid: str
    t0: float = 0.0
    acked: float | None = None
    status: int | None = None
    stored: float | None = None  # the delivery's row (receiver's group commit)
    indexed: float | None = None  # the inbound message's row (indexer's transaction)
    read: float | None = None  # the mark-read call at the sandbox
    model: float | None = None  # the model call at the sandbox
    finished: float | None = None  # the reply job's finish (its transaction's start)
    dispatched: float | None = None  # the outbox's dispatch mark
    sent: float | None = None  # t1: the text send at the sandbox
    sends: int = 0
    echoed: bool = False

    @property
    def latency(self) -> float | None:
        return None if self.sent is None else self.sent - self.t0


@dataclass(frozen=True, slots=True)
class Round:
    name: str
    timelines: list[Timeline]
    strays: int  # text sends to nobody of this round
    answered_in: float | None  # first write -> last answer; None: not all within ROUND_LIMIT
    cpu: dict[str, float]

    @property
    def latencies(self) -> list[float]:
        return sorted(t.latency for t in self.timelines if t.latency is not None)

    def problems(self) -> list[str]:
        found = []
        refused = sum(1 for t in self.timelines if t.status != 200)
        if refused:
            found.append(f"{refused} webhook(s) not answered 200")
        missing = sum(1 for t in self.timelines if t.sends == 0)
        if missing:
            found.append(f"{missing} conversation(s) not answered within {ROUND_LIMIT:g} s")
        twice = sum(1 for t in self.timelines if t.sends > 1)
        if twice:
            found.append(f"{twice} conversation(s) answered more than once")
        wrong = sum(1 for t in self.timelines if t.sends and not t.echoed)
        if wrong:
            found.append(f"{wrong} answer(s) not the customer's own text")
        if self.strays:
            found.append(f"{self.strays} text send(s) to customers not writing in this round")
        return found


def _wamid(body: bytes) -> str:
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    return str(value["messages"][0]["id"])


async def _open_all(endpoint: Endpoint, count: int) -> list[KeepAlive]:
    connections = [KeepAlive(endpoint.host, endpoint.port) for _ in range(count)]
    opened = await asyncio.gather(*(c.open() for c in connections))
    if not all(opened):
        for connection in connections:
            connection.close()
        raise StartFailed("the web process refused connections")
    return connections


async def _post(connection: KeepAlive, request: bytes, timeline: Timeline, delay: float) -> None:
    if delay:
        await asyncio.sleep(delay)
    timeline.t0 = time.perf_counter()
    timeline.status = await connection.exchange(request)
    timeline.acked = time.perf_counter()


def _match(arrivals: list[Arrival], by_customer: dict[str, Timeline], round_: int) -> int:
    """Each arrival onto its conversation's timeline; the number of text sends to nobody."""
    by_wamid = {t.wamid: t for t in by_customer.values()}
    strays = 0
    for arrival in arrivals:
        if arrival.path == MODEL_PATH:
            found = MESSAGE_PATTERN.findall(arrival.body)  # the history holds earlier rounds'
            if found and int(found[-1][0]) == round_:
                timeline = by_customer.get(found[-1][1].decode())
                if timeline is not None and timeline.model is None:
                    timeline.model = arrival.at
            continue
        body = _json(arrival.body)
        if body.get("status") == "read":
            marked = by_wamid.get(str(body.get("message_id")))
            if marked is not None and marked.read is None:
                marked.read = arrival.at
        elif body.get("type") == "text":
            timeline = by_customer.get(str(body.get("to")))
            if timeline is None:
                strays += 1
                continue
            timeline.sends += 1
            if timeline.sent is None:
                timeline.sent = arrival.at
                text = body.get("text")
                expected = MESSAGE.format(round=round_, customer=timeline.customer)
                timeline.echoed = isinstance(text, Mapping) and text.get("body") == expected
    return strays


# The database's moments of a round's conversations, by the inbound message's wamid.
MOMENTS = """
SELECT mi.wamid, d.received_at AS stored, mi.created_at AS indexed, r.finished_at AS finished,
       mo.dispatched_at AS dispatched
  FROM messages mi
  LEFT JOIN deliveries d ON d.id = mi.delivery_id
  LEFT JOIN replies r ON r.id = mi.reply_id
  LEFT JOIN messages mo ON mo.reply_id = r.id AND mo.direction = 'out'
 WHERE mi.direction = 'in' AND mi.wamid = ANY($1::text[])
"""


async def _read_moments(
    conn: asyncpg.Connection, timelines: list[Timeline], wall_minus_perf: float
) -> None:
    """The database's times, PostgreSQL's clock (this machine's wall clock) read as ours."""

    def ours(at: datetime | None) -> float | None:
        return None if at is None else at.timestamp() - wall_minus_perf

    by_wamid = {t.wamid: t for t in timelines}
    for row in await conn.fetch(MOMENTS, list(by_wamid)):
        timeline = by_wamid[row["wamid"]]
        timeline.stored = ours(row["stored"])
        timeline.indexed = ours(row["indexed"])
        timeline.finished = ours(row["finished"])
        timeline.dispatched = ours(row["dispatched"])


async def run_round(
    running: Running,
    conn: asyncpg.Connection,
    name: str,
    round_: int,
    plan: list[Conversation],
    spread: float = 0.0,
) -> Round:
    """Every conversation of `plan` writes once, all at once (or evenly over `spread` seconds);
    until each is answered."""
    bodies = [
        text_message(
            c.number.phone_number_id,
            c.customer,
            MESSAGE.format(round=round_, customer=c.customer),
            display_phone_number=c.number.display,
            waba_id=WABA_ID,
            name=f"Customer {c.customer[-4:]}",
        )
        for c in plan
    ]
    requests = build_requests(running.endpoint, bodies, running.stack.app_secret)
    timelines = [Timeline(c.customer, _wamid(b)) for c, b in zip(plan, bodies, strict=True)]
    by_customer = {t.customer: t for t in timelines}
    connections = await _open_all(running.endpoint, len(plan))
    recorder = running.recorder
    try:
        await asyncio.sleep(CONNECT_SETTLE)
        recorder.take()
        recorder.expect(list(by_customer))
        before, wall_minus_perf = cpu_snapshot(running.stack), time.time() - time.perf_counter()
        began = time.perf_counter()
        posts = asyncio.gather(
            *(
                _post(c, r, t, i * spread / len(plan))
                for i, (c, r, t) in enumerate(zip(connections, requests, timelines, strict=True))
            )
        )
        answered_in: float | None = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.all_answered.wait(), ROUND_LIMIT + spread)
            answered_in = time.perf_counter() - began
        cpu = cpu_shares(before, cpu_snapshot(running.stack), time.perf_counter() - began)
        with contextlib.suppress(TimeoutError):  # a post never answered shows as its status
            await asyncio.wait_for(posts, ROUND_LIMIT + spread)
        await asyncio.sleep(DUPLICATE_GRACE)
    finally:
        for connection in connections:
            connection.close()
    strays = _match(recorder.take(), by_customer, round_)
    await _read_moments(conn, timelines, wall_minus_perf)
    return Round(name, timelines, strays, answered_in, cpu)


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Figures | None:
        if not seconds:
            return None
        ordered = sorted(seconds)
        return cls(
            len(ordered),
            percentile(ordered, 0.50) * 1000,
            percentile(ordered, 0.90) * 1000,
            percentile(ordered, 0.99) * 1000,
            ordered[-1] * 1000,
        )

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": round(self.p50_ms, 2),
            "p90": round(self.p90_ms, 2),
            "p99": round(self.p99_ms, 2),
            "max": round(self.max_ms, 2),
        }


COLUMNS = "{:<10} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10}"


def _row(name: str, figures: Figures | None, extra: str) -> str:
    if figures is None:
        return f"{name:<10} nothing answered"
    return COLUMNS.format(
        name,
        figures.count,
        f"{figures.p50_ms:.1f}",
        f"{figures.p90_ms:.1f}",
        f"{figures.p99_ms:.1f}",
        f"{figures.max_ms:.1f}",
        extra,
    )


# Milestones of the breakdown: what each is, and how a timeline holds it.
MILESTONES: tuple[tuple[str, str], ...] = (
    ("stored", "delivery row written (receiver's group commit; received_at)"),
    ("acked", "webhook answered 200 (read by the bench)"),
    ("indexed", "message indexed, reply job queued (indexer's transaction; created_at)"),
    ("read", "mark-read call at Graph (reply job claimed, context read)"),
    ("model", "model call at the model fake (history read)"),
    ("finished", "reply job finishing: answer queued (its transaction; finished_at)"),
    ("dispatched", "send claimed and marked (outbox; dispatched_at)"),
    ("sent", "text send at Graph (t1)"),
)


def _ms(ordered: list[float], q: float) -> float | None:
    return percentile(ordered, q) * 1000 if ordered else None


BREAKDOWN = "{:<11} {:>8} {:>8} {:>9}  {}"


def breakdown(timelines: list[Timeline]) -> list[str]:
    """Per milestone: p50/p99 of its time since the webhook was written, and the median of
    each conversation's step from the milestone before it on the path."""
    lines = [BREAKDOWN.format("webhook ->", "p50 ms", "p99 ms", "step p50", "milestone")]
    previous: list[float | None] | None = None
    for attribute, meaning in MILESTONES:
        values: list[float | None] = [getattr(t, attribute) for t in timelines]
        since = sorted(v - t.t0 for t, v in zip(timelines, values, strict=True) if v is not None)
        step = None
        if previous is not None and attribute != "acked":
            steps = sorted(
                v - p
                for v, p in zip(values, previous, strict=True)
                if v is not None and p is not None
            )
            step = _ms(steps, 0.5)
        lines.append(
            BREAKDOWN.format(
                attribute,
                format_or_dash(_ms(since, 0.5), ".1f"),
                format_or_dash(_ms(since, 0.99), ".1f"),
                format_or_dash(step, "+.1f"),
                meaning,
            )
        )
        if attribute != "acked":  # the POST's answer is beside the reply's path, not on it
            previous = values
    return lines


def render_report(
    rounds: list[Round], args: argparse.Namespace, warmup: Round | None, outcomes: dict[str, int]
) -> tuple[list[str], bool]:
    measured = [t for r in rounds for t in r.timelines]
    overall = Figures.of([t.latency for t in measured if t.latency is not None])
    # Written at once, k messages to a number cannot leave faster than its slots; spread out,
    # they come no faster than a number takes them (checked in _check_args).
    floor = (
        None
        if args.spread
        else Figures.of(pacing_floor(args.numbers, args.conversations, args.throughput))
    )
    lines = [
        "",
        COLUMNS.format("round", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "all in s"),
    ]
    for r in rounds:
        lines.append(_row(r.name, Figures.of(r.latencies), format_or_dash(r.answered_in, ".2f")))
    lines.append(_row("overall", overall, ""))
    lines.append(
        "latency: webhook POST written -> the text send to that customer reached the sandbox "
        "(one clock, this process's perf_counter); all in s: first POST -> last answer"
    )
    lines.append(
        f"pacing floor of {args.numbers} number(s) at {args.throughput}/s for "
        f"{args.conversations} conversations: p50 {floor.p50_ms:.1f} ms, p99 {floor.p99_ms:.1f} "
        "ms (Meta's throughput alone, had everything else taken no time)"
        if floor
        else f"pacing floor: none ({args.conversations} messages over {args.spread:g} s)"
    )
    lines += ["", "where the time goes, all measured rounds (ms since the webhook was written):"]
    lines += breakdown(measured)
    lines += ["", "cpu while each round was answered, in cores (bench: sandbox + client):"]
    for r in rounds:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items() if k != "machine")
        lines.append(
            f"  {r.name}: {shown}; machine {r.cpu.get('machine', 0.0):.2f} of {os.cpu_count()}"
        )
    lines.append(f"reply jobs after the run (state: outcome): {outcomes}")
    problems = [
        f"{r.name}: {p}" for r in ([warmup] if warmup else []) + rounds for p in r.problems()
    ]
    if len(rounds) < args.rounds:
        problems.append(f"{len(rounds)} of {args.rounds} round(s) run")
    lines += [f"PROBLEM {p}" for p in problems]
    met = (
        overall is not None
        and not problems
        and overall.p50_ms < TARGET_P50_MS
        and overall.p99_ms < TARGET_P99_MS
    )
    shown = (
        f"p50 {overall.p50_ms:.1f} ms, p99 {overall.p99_ms:.1f} ms over {overall.count}"
        if overall
        else "nothing answered"
    )
    lines += [
        "",
        f"target p50 < {TARGET_P50_MS:g} ms and p99 < {TARGET_P99_MS:g} ms: "
        f"{'MET' if met else 'NOT MET'} ({shown})",
    ]
    summary = {
        "bench": "reply",
        "conversations": args.conversations,
        "rounds": args.rounds,
        "numbers": args.numbers,
        "throughput": args.throughput,
        "deployment": deployment(args.workers),
        "spread_seconds": args.spread,
        "reply_jobs_in_flight": {"worker": MAX_IN_FLIGHT, "per_tenant": MAX_PER_TENANT},
        "latency_ms": {r.name: f.summary() for r in rounds if (f := Figures.of(r.latencies))},
        "overall_ms": None if overall is None else overall.summary(),
        "pacing_floor_ms": None if floor is None else floor.summary(),
        "problems": problems,
        "reply_jobs": outcomes,
        "cpu": {r.name: r.cpu for r in rounds},
        "target_met": met,
    }
    return [*lines, json.dumps(summary)], not problems


# --- the run ------------------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> str | None:
    if not 1 <= args.conversations <= MAX_CONVERSATIONS:
        return f"--conversations must be 1 to {MAX_CONVERSATIONS}"
    if not 1 <= args.rounds <= MAX_ROUNDS:
        return f"--rounds must be 1 to {MAX_ROUNDS} (each writes to the same customers again)"
    if not 1 <= args.numbers <= args.conversations:
        return "--numbers must be 1 to --conversations"
    if not 1 <= args.throughput <= 1000:
        return "--throughput must be 1 to 1000 (Meta's range)"
    if args.warmup < 0:
        return "--warmup must not be negative"
    if not 1 <= args.workers <= MAX_WORKERS:
        return f"--workers must be 1 to {MAX_WORKERS}"
    if not 0 <= args.spread <= MAX_SPREAD:
        return f"--spread must be 0 (at once) to {MAX_SPREAD:g} seconds"
    per_number = math.ceil(args.conversations / args.numbers)
    if args.spread and args.spread / per_number < 1 / args.throughput:
        return "--spread too short: a number would get its messages faster than --throughput"
    return None


OUTCOMES = """
SELECT state, coalesce(outcome, '-') AS outcome, count(*) AS n FROM replies
 GROUP BY state, outcome ORDER BY n DESC
"""


async def _rounds(
    running: Running, args: argparse.Namespace
) -> tuple[list[Round], Round | None, dict[str, int]]:
    """The warm-up, then the measured rounds; a round with a problem ends the run (the next
    would meet its leftovers). Also the reply jobs' outcomes at the end."""
    numbers = running.numbers
    conn = await connect(running.stack.database_url)
    rounds: list[Round] = []
    warmup = None
    try:
        if args.warmup:
            progress("reply", f"warm-up: {args.warmup} conversation(s), not measured")
            warm = conversations(numbers, args.warmup, "4470")
            warmup = await run_round(running, conn, "warm-up", 0, warm)
        plan = conversations(numbers, args.conversations, "4479")
        when = f"write over {args.spread:g} s" if args.spread else "write at once"
        for index in range(1, args.rounds + 1):
            if (warmup is not None and warmup.problems()) or any(r.problems() for r in rounds):
                progress("reply", "stopped: see the problems below")
                break
            progress("reply", f"round {index}/{args.rounds}: {len(plan)} customers {when}")
            done = await run_round(running, conn, f"round {index}", index, plan, args.spread)
            figures = Figures.of(done.latencies)
            progress(
                "reply",
                f"  answered {len(done.latencies)}/{len(plan)}"
                + (f"; p50 {figures.p50_ms:.1f} ms, p99 {figures.p99_ms:.1f} ms" if figures else "")
                + "".join(f"; {p}" for p in done.problems()),
            )
            rounds.append(done)
        outcomes = {f"{r['state']}: {r['outcome']}": r["n"] for r in await conn.fetch(OUTCOMES)}
    finally:
        await conn.close()
    return rounds, warmup, outcomes


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, workdir: Path) -> Report:
    started, recorder = await start(stack, workdir, args.workers)
    progress("reply", f"seeding a tenant, {args.numbers} number(s) with the assistant on")
    numbers = plan_numbers(args.numbers, args.throughput)
    await seed(started, numbers, args.warmup + args.conversations * args.rounds)
    port = int(started.api.rsplit(":", 1)[1])
    running = Running(started, recorder, Endpoint(HOST, port, WEBHOOK_PATH), numbers)
    rounds, warmup, outcomes = await _rounds(running, args)
    lines, sound = render_report(rounds, args, warmup, outcomes)
    if not sound:
        print_logs(workdir)  # the why of a conversation left unanswered
    return Report(lines, 0 if sound else 1)


async def run_reply_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        say("reply", problem)
        return 2
    when = f"over {args.spread:g} s" if args.spread else "at once"
    say(
        "reply",
        f"{args.conversations} conversations {when}, {args.rounds} round(s) after "
        f"{args.warmup} warm-up; {args.numbers} number(s) at {args.throughput}/s; model echo, "
        f"debounce 0; {deployment(args.workers)}",
    )
    return await run_bench("reply", functools.partial(_run, args))

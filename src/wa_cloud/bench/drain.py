"""`wa-cloud bench drain`: how fast workers index stored deliveries, and the lag at a steady rate.

docs/design.md, "Performance targets": one worker indexes at least 5,000 stored single-message
deliveries a second, two at least 1.5 times that; processing lag p99 under 1 s at a sustained
2,000 a second.

The run, all on loopback and all subprocesses of this one: `bench send`'s stack with no worker
(an embedded PostgreSQL with the migrations; the sandbox Meta, status webhooks off, where the
numbers are registered and where the media fetcher's lookups land; `wa-cloud serve
--no-worker`), and the corpus's business numbers registered to one tenant through the API, so
deliveries are indexed as that tenant's, not kept as orphaned events.

Then, for each worker count of `--workers`, a phase:

1. `--deliveries` new signed deliveries posted to `POST /webhook` as fast as the web process
   answers (`bench send`'s poster, keep-alive connections): stored by the receiver's group
   commit exactly as Meta's are, with no worker running to take them.
2. The gate (as `bench send` gates its backlog): their `run_after` moves an hour ahead (the
   claim takes due rows only) and the table is vacuumed, so the claims meet what a fresh backlog
   looks like; the worker processes start; one UPDATE makes the rows due and NOTIFYs the
   workers, and the clock starts. Times are read from PostgreSQL's clock, the one that writes
   `processed_at`.
3. Until none is pending: deliveries indexed a second, overall (gate opening -> none pending)
   and over the middle 80 % (the 10th -> 90th percentile of `processed_at`); each delivery's
   wait (gate opening -> processed_at: in a backlog, the lag is the place in the queue); CPU by
   process.
4. With `--rate R --seconds S`: R signed deliveries a second for S seconds from `bench ingest`'s
   load generator (paced, in its own process) while those workers run; the processing lag
   received_at -> processed_at of those deliveries (p50/p99), their acknowledgement, CPU.

Media lookups answer half a second late (MEDIA_LOOKUP_SECONDS): the sandbox would refuse the
made-up media ids at once, and a fetcher that then claims, fails and commits again hundreds of
times a second would load PostgreSQL as no fetcher waiting on Meta does. So the downloads the
indexer queues wait, as behind a real Meta, and their fetcher adds a trickle to every phase.

`processed_at` is the start of the transaction that indexed a delivery's batch (PostgreSQL's
now()): earlier than its commit by at most one batch's work (`WA_WORKER_BATCH_SIZE`, 100
deliveries: tens of milliseconds at the target rate).

The deliveries are copies of the corpus's single-message files (`--mix messages`, the default:
every file of webhooks/messages/ that holds one message), or of every valid corpus file (`--mix
corpus`: batches, statuses, fields, the orphan), byte for byte but for their identifiers: each
copy has wamids, media ids and customers of its own (`reissue`), so none is skipped as a
duplicate, every media message queues a download, and contacts are written as a stream of
conversations writes them (CUSTOMER_MESSAGES). Field events name nothing to renew: in the corpus
mix their copies after the first are duplicates, as Meta's redeliveries are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from wa_cloud.bench.harness import (
    HOST,
    WEBHOOK_PATH,
    Report,
    StartFailed,
    progress,
    run_bench,
    say,
)
from wa_cloud.bench.load import (
    LOAD_START_ALLOWANCE,
    Endpoint,
    Window,
    build_requests,
    run_load,
)
from wa_cloud.bench.send import (
    PlannedNumber,
    Stack,
    checked,
    cpu_shares,
    cpu_snapshot,
    create_tenant,
    post_all,
    seed_number,
    start_stack,
    worker_process,
)
from wa_cloud.bench.stats import Stats, format_or_dash, summarize
from wa_cloud.db import channels
from wa_cloud.db.pool import connect
from wa_cloud.events import InboundMessage, StatusUpdate
from wa_cloud.inbound.parse import InvalidDelivery, parse_delivery
from wa_cloud.media.rules import MEDIA_KINDS
from wa_cloud.sandbox.corpus import corpus_files

# The corpus's business numbers (webhooks/README.md): A everywhere, B in a batch and one field.
CORPUS_NUMBERS = (("106540352242922", "15550783881"), ("106540352242923", "15550783882"))
# Every copy's media ids begin so (Meta's are digits): the sandbox slows their lookups alone.
MEDIA_ID_PREFIX = "99"
MEDIA_LOOKUP_SECONDS = 0.5
# Each customer writes this many of a phase's deliveries, round robin: a phase inserts contacts
# and updates them, and one customer's messages stand deliveries/4 apart in the stream, as a
# conversation's are seconds apart in a busy one. So batches claimed at the same time (at most
# 2 workers x 2 indexers x 100 here) share no customer from 1,600 deliveries on: sharing one
# would queue them on its contact lock, which a real stream of many customers rarely does.
CUSTOMER_MESSAGES = 4
POST_CONNECTIONS = 32
SUSTAIN_CONNECTIONS = 32
# Spare bodies for the paced load: each connection walks its own slice of them, and one that
# ran a request or two past its share must not wrap into another's (a duplicate wamid).
SUSTAIN_SPARE = 1.1
POLL_SECONDS = 0.02  # the drain's end is seen this late at most
# Bounds in time: at least 200 deliveries a second, or the phase reports what it got.
SLOWEST_RATE = 200.0
LIMIT_FLOOR = 30.0
MAX_DELIVERIES = 1_000_000
MAX_WORKERS = 8
MAX_RATE = 50_000.0
MAX_SECONDS = 600.0

# docs/design.md, "Performance targets".
TARGET_ONE_WORKER = 5000.0
TARGET_TWO_WORKERS = 1.5
TARGET_LAG_RATE = 2000.0
TARGET_LAG_P99_MS = 1000.0
# A sustained run counts for the lag target only when the web process took nearly that rate.
ACHIEVED_SHARE = 0.95


# --- the deliveries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A corpus body, and the identifiers in it that each copy gets anew."""

    name: str
    body: bytes
    wamids: tuple[str, ...]
    media_ids: tuple[str, ...]
    customers: tuple[str, ...]  # senders' and recipients' wa_ids and BSUID user_ids


def _quoted(value: str) -> bytes:
    return json.dumps(value).encode()


def template(path: Path) -> Template:
    """`path`'s identifiers, as the worker's own parser reads them."""
    body = path.read_bytes()
    wamids: list[str] = []
    media_ids: list[str] = []
    customers: list[str | None] = []
    for event in parse_delivery(body).events:
        if isinstance(event, InboundMessage):
            wamids.append(event.wamid)
            customers += (event.sender.wa_id, event.sender.user_id)
            attached = event.raw.get(event.type)
            if event.type in MEDIA_KINDS and isinstance(attached, Mapping):
                media_id = attached.get("id")
                if isinstance(media_id, str) and media_id.isdigit():  # what the fetcher looks up
                    media_ids.append(media_id)
        elif isinstance(event, StatusUpdate):
            wamids.append(event.wamid)
            customers += (event.recipient_id, event.recipient_user_id)
    found = Template(
        path.stem,
        body,
        tuple(dict.fromkeys(wamids)),
        tuple(dict.fromkeys(media_ids)),
        tuple(dict.fromkeys(c for c in customers if c)),
    )
    for value in (*found.wamids, *found.media_ids, *found.customers):
        if _quoted(value) not in body:  # written escaped: a copy would keep the old one
            raise StartFailed(f"corpus file {path.name}: {value!r} is not written verbatim")
    return found


def corpus_templates(mix: str) -> list[Template]:
    """The corpus files of `mix`: single-message deliveries, or every valid file."""
    if mix == "messages":
        chosen = []
        for path in corpus_files("messages"):
            events = parse_delivery(path.read_bytes()).events
            if len(events) == 1 and isinstance(events[0], InboundMessage):
                chosen.append(template(path))
        return chosen
    return [template(path) for path in corpus_files()]


def _customer(old: str, ordinal: int, phase: int, customer: int) -> str:
    # Digits like a wa_id; a BSUID keeps its country prefix ("US.", "BR.").
    country, dot, _ = old.rpartition(".")
    return f"{country}{dot}{ordinal + 1}{phase:03d}{customer:08d}"


def reissue(source: Template, phase: int, copy: int, customer: int) -> bytes:
    """A copy of `source` with wamids and media ids that no other copy has, and the customer
    numbered `customer` of this phase in place of each person it names."""
    swaps = [(w, f"{w}.{phase}.{copy}") for w in source.wamids]
    swaps += [
        (m, f"{MEDIA_ID_PREFIX}{phase:03d}{copy:09d}{i:02d}")
        for i, m in enumerate(source.media_ids)
    ]
    swaps += [(c, _customer(c, i, phase, customer)) for i, c in enumerate(source.customers)]
    body = source.body
    for old, new in swaps:
        body = body.replace(_quoted(old), _quoted(new))
    return body


def phase_bodies(templates: list[Template], phase: int, count: int) -> list[bytes]:
    customers = max(1, math.ceil(count / CUSTOMER_MESSAGES))
    return [reissue(templates[k % len(templates)], phase, k, k % customers) for k in range(count)]


# --- the database's side ------------------------------------------------------------------------

CLOSE_GATE = (
    "UPDATE deliveries SET run_after = now() + interval '1 hour' WHERE state = 'pending'"
    " AND id > $1"
)
# As the receiver's group commit announces its deliveries.
OPEN_GATE = """
WITH opened AS (
    UPDATE deliveries SET run_after = now() WHERE state = 'pending' RETURNING 1
)
SELECT pg_notify($1, count(*)::text) FROM opened
"""
# The deliveries after id $1: outcomes, the middle 80 % of their processing, and their lag from
# received_at, or from $2 when later (the gate opening: a gated backlog could not go earlier).
FIGURES = """
SELECT count(*) FILTER (WHERE state = 'processed') AS processed,
       count(*) FILTER (WHERE state = 'quarantined') AS quarantined,
       count(*) FILTER (WHERE state = 'pending') AS pending,
       percentile_disc(0.1) WITHIN GROUP (ORDER BY processed_at)
         FILTER (WHERE state = 'processed') AS p10_at,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY processed_at)
         FILTER (WHERE state = 'processed') AS p90_at,
       max(processed_at) FILTER (WHERE state = 'processed') AS last_at,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY lag) FILTER (WHERE state = 'processed') AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY lag) FILTER (WHERE state = 'processed') AS p99,
       max(lag) FILTER (WHERE state = 'processed') AS worst
  FROM (SELECT state, processed_at,
               extract(epoch FROM processed_at - greatest(received_at, $2::timestamptz))::float8
                 AS lag
          FROM deliveries
         WHERE id > $1) AS d
"""


# What the run left in the index: the deliveries' messages were the tenant's, not orphaned.
INDEXED = """
SELECT (SELECT count(*) FROM messages WHERE direction = 'in') AS messages,
       (SELECT count(*) FROM events WHERE orphaned) AS orphaned_events,
       (SELECT count(*) FROM contacts) AS contacts,
       (SELECT count(*) FROM media) AS media_downloads
"""


async def last_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM deliveries"))


PENDING = """
SELECT clock_timestamp() AS at, EXISTS (SELECT 1 FROM deliveries WHERE state = 'pending') AS waiting
"""


async def none_pending_at(conn: asyncpg.Connection, limit: float) -> datetime | None:
    """PostgreSQL's clock when no delivery is pending any more; None when some still are after
    `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        row = await conn.fetchrow(PENDING)
        if not row["waiting"]:
            at: datetime = row["at"]
            return at
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)


@dataclass(frozen=True, slots=True)
class Lag:
    p50_ms: float
    p99_ms: float
    max_ms: float

    def summary(self) -> dict[str, int]:
        return {"p50": round(self.p50_ms), "p99": round(self.p99_ms), "max": round(self.max_ms)}


@dataclass(frozen=True, slots=True)
class Figures:
    processed: int
    quarantined: int
    pending: int
    middle_rate: float | None  # deliveries a second between the 10th and 90th percentile
    lag: Lag | None
    last_at: datetime | None  # when the last batch began

    def states(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "quarantined": self.quarantined,
            "pending": self.pending,
        }


async def figures(conn: asyncpg.Connection, after: int, floor: datetime | None) -> Figures:
    row = await conn.fetchrow(FIGURES, after, floor)
    middle = None
    if row["p10_at"] is not None and row["p90_at"] > row["p10_at"]:
        middle = 0.8 * row["processed"] / (row["p90_at"] - row["p10_at"]).total_seconds()
    lag = None
    if row["p50"] is not None:
        lag = Lag(row["p50"] * 1000, row["p99"] * 1000, row["worst"] * 1000)
    return Figures(
        row["processed"], row["quarantined"], row["pending"], middle, lag, row["last_at"]
    )


# --- a phase ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Bench:
    """What every phase works with."""

    args: argparse.Namespace
    stack: Stack
    conn: asyncpg.Connection
    templates: list[Template]
    endpoint: Endpoint
    workdir: Path
    serials: itertools.count[int]  # worker log names: a log is never reused (its ready marker)

    def limit(self, deliveries: int) -> float:
        return LIMIT_FLOOR + deliveries / SLOWEST_RATE


@dataclass(frozen=True, slots=True)
class Drained:
    """A stored backlog and what `workers` worker processes made of it."""

    workers: int
    posted: dict[str, int]  # answers to the posts, by status
    post_seconds: float
    stored: int
    seconds: float | None  # gate opening -> none pending; None: not within the limit
    last_batch: float | None  # gate opening -> the last batch's start
    figures: Figures
    cpu: dict[str, float]

    @property
    def rate(self) -> float | None:
        if self.seconds is None or self.seconds <= 0:
            return None
        return self.figures.processed / self.seconds


@dataclass(frozen=True, slots=True)
class Sustained:
    workers: int
    rate: float
    seconds: float
    ack: Stats
    drained: bool  # every one of them indexed within the limit after the load
    figures: Figures
    cpu: dict[str, float]

    @property
    def achieved(self) -> float:
        return self.ack.ok / self.seconds


@dataclass(frozen=True, slots=True)
class Phase:
    drained: Drained
    sustained: Sustained | None


async def store_backlog(bench: Bench, phase: int) -> tuple[int, dict[str, int], float, int]:
    """`--deliveries` fresh deliveries through POST /webhook; returns the id before them, the
    answers, the seconds it took and how many were stored."""
    count = bench.args.deliveries
    bodies = phase_bodies(bench.templates, phase, count)
    requests = build_requests(bench.endpoint, bodies, bench.stack.app_secret)
    after = await last_id(bench.conn)
    started = time.monotonic()
    try:
        async with asyncio.timeout(bench.limit(count)):
            tally = await post_all(bench.endpoint.port, requests, POST_CONNECTIONS, ok=200)
    except TimeoutError:
        raise StartFailed(f"{count} deliveries not posted in {bench.limit(count):.0f} s") from None
    seconds = time.monotonic() - started
    if tally.first_error:
        progress("drain", f"first refused post: {tally.first_error}")
    stored = int(await bench.conn.fetchval("SELECT count(*) FROM deliveries WHERE id > $1", after))
    return after, {str(k): v for k, v in sorted(tally.statuses.items())}, seconds, stored


INDEXED_TABLES = ("deliveries", "contacts", "messages", "statuses", "events", "media")


async def settle_tables(conn: asyncpg.Connection) -> None:
    """Before a measured phase, the tables as a service running for a while has them: what the
    last phase left dead vacuumed, and the planner's statistics current (autovacuum analyses a
    grown table within a minute or so; a phase that starts before it would measure plans made
    for the empty table: one contact lookup reading every contact of the number). An empty
    table is left unanalysed, as a new deployment's is."""
    for table in INDEXED_TABLES:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")


async def drain(bench: Bench, workers: int, phase: int, crew: contextlib.AsyncExitStack) -> Drained:
    """Store a backlog behind the gate, start `workers` workers on `crew`, open the gate and
    wait until none is pending."""
    count = bench.args.deliveries
    progress("drain", f"{workers} worker(s): posting {count} deliveries, no worker running")
    after, posted, post_seconds, stored = await store_backlog(bench, phase)
    progress("drain", f"  {stored} stored in {post_seconds:.1f} s; closing the gate")
    await bench.conn.execute(CLOSE_GATE, after)
    await settle_tables(bench.conn)
    stack = bench.stack
    stack.pids["worker"] = [
        await crew.enter_async_context(
            worker_process(stack.env, next(bench.serials), bench.workdir)
        )
        for _ in range(workers)
    ]
    progress("drain", f"  {workers} worker(s) started; opening the gate")
    before, started = cpu_snapshot(stack), time.monotonic()
    await bench.conn.execute(OPEN_GATE, channels.DELIVERIES)
    opened: datetime = await bench.conn.fetchval("SELECT now()")
    done = await none_pending_at(bench.conn, bench.limit(stored))
    cpu = cpu_shares(before, cpu_snapshot(stack), time.monotonic() - started)
    seconds = None if done is None else (done - opened).total_seconds()
    found = await figures(bench.conn, after, opened)
    last = None if found.last_at is None else (found.last_at - opened).total_seconds()
    progress(
        "drain",
        f"  {found.processed} indexed in {format_or_dash(seconds, '.2f')} s"
        + ("" if seconds is not None else " (NOT drained within the limit)")
        + f"; the last batch began at {format_or_dash(last, '.2f')} s",
    )
    return Drained(workers, posted, post_seconds, stored, seconds, last, found, cpu)


async def sustain(bench: Bench, workers: int, phase: int) -> Sustained:
    """`--rate` deliveries a second for `--seconds` s, paced, with the workers running."""
    rate, seconds = bench.args.rate, bench.args.seconds
    count = math.ceil(rate * seconds * SUSTAIN_SPARE) + SUSTAIN_CONNECTIONS
    bodies = phase_bodies(bench.templates, phase, count)
    requests = build_requests(bench.endpoint, bodies, bench.stack.app_secret)
    progress("drain", f"{workers} worker(s): sustained {rate:g}/s for {seconds:g} s")
    await settle_tables(bench.conn)
    after = await last_id(bench.conn)
    window = Window(time.monotonic() + LOAD_START_ALLOWANCE, 0.0, seconds)
    edges = asyncio.create_task(window.read_at_edges(functools.partial(cpu_snapshot, bench.stack)))
    try:
        tally = await run_load(bench.endpoint, requests, window, SUSTAIN_CONNECTIONS, rate=rate)
        before, after_load = await edges
    finally:
        edges.cancel()
    ack = summarize(tally, seconds, None)
    limit = bench.limit(ack.requests)
    done = await none_pending_at(bench.conn, limit)
    found = await figures(bench.conn, after, None)
    cpu = cpu_shares(before, after_load, seconds)
    return Sustained(workers, rate, seconds, ack, done is not None, found, cpu)


async def run_phase(bench: Bench, workers: int, index: int) -> Phase:
    """One worker count: the drain, then the sustained load if asked."""
    async with contextlib.AsyncExitStack() as crew:  # the workers stop when the phase ends
        drained = await drain(bench, workers, 2 * index, crew)
        sustained = None
        if bench.args.rate is not None:
            sustained = await sustain(bench, workers, 2 * index + 1)
    return Phase(drained, sustained)


# --- the report ---------------------------------------------------------------------------------


def _ms(lag: Lag | None, field: str) -> str:
    return format_or_dash(None if lag is None else getattr(lag, field), ".0f")


def _cpu_line(label: str, cpu: dict[str, float]) -> str:
    shown = ", ".join(f"{role} {share:.2f}" for role, share in cpu.items() if role != "machine")
    return f"  {label}: {shown}; machine {cpu.get('machine', 0.0):.2f} of {os.cpu_count()}"


def _table(columns: str, rows: Iterable[Sequence[object]]) -> list[str]:
    return [columns.format(*row) for row in rows]


def _states(found: Figures, drained: bool = True) -> str:
    shown = ", ".join(f"{state} {n}" for state, n in found.states().items() if n)
    return shown if drained else f"{shown}; NOT drained"


def drain_table(phases: list[Phase]) -> list[str]:
    header = (
        "workers",
        "stored",
        "post/s",
        "drain s",
        "indexed/s",
        "middle/s",
        "wait p50",
        "wait p99",
        "states",
    )
    rows = [
        (
            d.workers,
            d.stored,
            f"{d.stored / d.post_seconds:.0f}" if d.post_seconds > 0 else "-",
            format_or_dash(d.seconds, ".2f"),
            format_or_dash(d.rate, ".0f"),
            format_or_dash(d.figures.middle_rate, ".0f"),
            _ms(d.figures.lag, "p50_ms"),
            _ms(d.figures.lag, "p99_ms"),
            _states(d.figures, d.seconds is not None),
        )
        for d in (phase.drained for phase in phases)
    ]
    return _table("{:>7} {:>7} {:>7} {:>8} {:>10} {:>10} {:>8} {:>8}  {}", [header, *rows])


def sustained_table(runs: list[Sustained]) -> list[str]:
    header = (
        "workers",
        "rate/s",
        "200s",
        "200s/s",
        "ack p50",
        "ack p99",
        "lag p50",
        "lag p99",
        "lag max",
        "states",
    )
    rows = [
        (
            s.workers,
            f"{s.rate:g}",
            s.ack.ok,
            f"{s.achieved:.0f}",
            f"{s.ack.p50_ms:.1f}",
            f"{s.ack.p99_ms:.1f}",
            _ms(s.figures.lag, "p50_ms"),
            _ms(s.figures.lag, "p99_ms"),
            _ms(s.figures.lag, "max_ms"),
            _states(s.figures, s.drained),
        )
        for s in runs
    ]
    return _table("{:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  {}", [header, *rows])


LEGEND = (
    "drain: the backlog gated until the workers were up; drain s: gate opening -> none pending; "
    "indexed/s: processed / drain s; middle/s: over the middle 80 % of processed_at; wait "
    "p50/p99 (ms): gate opening -> processed_at"
)
SUSTAINED_LEGEND = (
    "sustained: paced posts to POST /webhook with the workers running; ack p50/p99 (ms): "
    "request written -> answer read; lag p50/p99/max (ms): received_at -> processed_at"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    met: bool | None  # None: not measured by this run
    line: str


def _by_workers(phases: list[Phase]) -> dict[int, Drained]:
    return {p.drained.workers: p.drained for p in phases}


def verdicts(phases: list[Phase]) -> dict[str, Verdict]:
    drained = _by_workers(phases)
    one, two = drained.get(1), drained.get(2)
    one_rate = None if one is None else one.rate
    two_rate = None if two is None else two.rate
    found = {}
    if one_rate is None:
        found["one_worker"] = Verdict(None, "not measured (no drained run with 1 worker)")
    else:
        found["one_worker"] = Verdict(one_rate >= TARGET_ONE_WORKER, f"{one_rate:.0f}/s")
    if one_rate is None or two_rate is None:
        found["two_workers"] = Verdict(None, "not measured (needs drained runs with 1 and 2)")
    else:
        ratio = two_rate / one_rate
        found["two_workers"] = Verdict(
            ratio >= TARGET_TWO_WORKERS, f"{ratio:.2f}x ({two_rate:.0f}/s vs {one_rate:.0f}/s)"
        )
    at_rate = [
        s
        for p in phases
        if (s := p.sustained) is not None
        and s.rate >= TARGET_LAG_RATE
        and s.achieved >= ACHIEVED_SHARE * TARGET_LAG_RATE
    ]
    if not at_rate:
        found["lag"] = Verdict(
            None, f"not measured (needs --rate {TARGET_LAG_RATE:.0f} or more, acknowledged)"
        )
    else:
        worst = max(
            (s.figures.lag.p99_ms if s.figures.lag and s.drained else math.inf) for s in at_rate
        )
        where = ", ".join(f"{s.achieved:.0f}/s with {s.workers} worker(s)" for s in at_rate)
        measured = "not drained" if math.isinf(worst) else f"{worst:.0f} ms"
        found["lag"] = Verdict(worst < TARGET_LAG_P99_MS, f"p99 {measured} at {where}")
    return found


def _word(verdict: Verdict) -> str:
    return {True: "MET", False: "NOT MET", None: "-"}[verdict.met]


def render_report(
    phases: list[Phase], args: argparse.Namespace, bodies: int, indexed: dict[str, int]
) -> list[str]:
    lines = ["", *drain_table(phases), LEGEND]
    runs = [p.sustained for p in phases if p.sustained is not None]
    if runs:
        lines += ["", *sustained_table(runs), SUSTAINED_LEGEND]
    lines += ["", "cpu, in cores (bench: this process; other: the rest of the machine):"]
    for phase in phases:
        d = phase.drained
        lines.append(_cpu_line(f"drain, {d.workers} worker(s)", d.cpu))
        if phase.sustained is not None:
            lines.append(_cpu_line(f"sustained, {d.workers} worker(s)", phase.sustained.cpu))
    for phase in phases:
        refused = {k: v for k, v in phase.drained.posted.items() if k != "200"}
        if refused:
            lines.append(f"{phase.drained.workers} worker(s): posts refused {refused}")
    lines.append(f"in the index after the run: {indexed}")
    found = verdicts(phases)
    lines += [
        "",
        f"target one worker >= {TARGET_ONE_WORKER:.0f} deliveries/s: "
        f"{_word(found['one_worker'])} ({found['one_worker'].line})",
        f"target two workers >= {TARGET_TWO_WORKERS:g}x one: "
        f"{_word(found['two_workers'])} ({found['two_workers'].line})",
        f"target lag p99 < {TARGET_LAG_P99_MS / 1000:g} s at a sustained "
        f"{TARGET_LAG_RATE:.0f}/s: {_word(found['lag'])} ({found['lag'].line})",
    ]
    summary = {
        "bench": "drain",
        "deliveries": args.deliveries,
        "mix": args.mix,
        "bodies": bodies,
        "workers": [p.drained.workers for p in phases],
        "rate": args.rate,
        "seconds": args.seconds,
        "drain": [
            {
                "workers": d.workers,
                "stored": d.stored,
                "posted": d.posted,
                "seconds": None if d.seconds is None else round(d.seconds, 3),
                "last_batch_seconds": None if d.last_batch is None else round(d.last_batch, 3),
                "rate": None if d.rate is None else round(d.rate, 1),
                "middle_rate": None
                if d.figures.middle_rate is None
                else round(d.figures.middle_rate, 1),
                "wait_ms": None if d.figures.lag is None else d.figures.lag.summary(),
                "states": d.figures.states(),
                "cpu": d.cpu,
            }
            for d in (p.drained for p in phases)
        ],
        "sustained": [
            {
                "workers": s.workers,
                "rate": s.rate,
                "achieved": round(s.achieved, 1),
                "ack": s.ack.summary(),
                "lag_ms": None if s.figures.lag is None else s.figures.lag.summary(),
                "drained": s.drained,
                "states": s.figures.states(),
                "cpu": s.cpu,
            }
            for s in runs
        ],
        "indexed": indexed,
        "targets": {name: v.met for name, v in found.items()},
    }
    return [*lines, json.dumps(summary)]


# --- the run ------------------------------------------------------------------------------------


def parse_workers(text: str) -> list[int] | None:
    """Worker counts from "1,2"; None when `text` is not a list of them."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        return None
    if not counts or len(counts) > MAX_WORKERS or not all(1 <= c <= MAX_WORKERS for c in counts):
        return None
    return counts


def _check_args(args: argparse.Namespace) -> str | None:
    if not 1 <= args.deliveries <= MAX_DELIVERIES:
        return f"--deliveries must be 1 to {MAX_DELIVERIES}"
    if parse_workers(args.workers) is None:
        return f"--workers must be worker counts of 1 to {MAX_WORKERS}, comma-separated (1,2)"
    if (args.rate is None) != (args.seconds is None):
        return "--rate and --seconds go together"
    if args.rate is not None and not (
        0 < args.rate <= MAX_RATE and 0 < args.seconds <= MAX_SECONDS
    ):
        return f"--rate must be above 0 and at most {MAX_RATE:g}, --seconds up to {MAX_SECONDS:g}"
    return None


async def _seed(stack: Stack) -> None:
    """One tenant owns the corpus's numbers (registered at the sandbox Meta and through our API,
    as a tenant registers them), so their deliveries are indexed as its own; the copies' media
    lookups are slowed."""
    async with stack.clients() as (api, sandbox):
        tenant = await create_tenant(api, stack.admin_token, "Drain Co")
        for pnid, display in CORPUS_NUMBERS:
            token = "EAAG-drain-" + secrets.token_urlsafe(16)
            await seed_number(api, sandbox, tenant, PlannedNumber(pnid, display, token, 80, 0))
        # Graph paths are /<version>/<id>...: only a lookup of a copy's media id contains this.
        slow = {"path_contains": f"/{MEDIA_ID_PREFIX}", "seconds": MEDIA_LOOKUP_SECONDS}
        checked(await sandbox.post("/_sandbox/latency", json=slow), "sandbox latency")


async def _run(
    args: argparse.Namespace,
    templates: list[Template],
    stack: contextlib.AsyncExitStack,
    workdir: Path,
) -> Report:
    running = await start_stack(
        stack, workdir, "drain", webhooks=False, workers=0, serve_worker=False
    )
    running.pids["bench"] = [os.getpid()]
    progress("drain", "registering the corpus's numbers to a tenant")
    await _seed(running)
    port = int(running.api.rsplit(":", 1)[1])
    conn = await connect(running.database_url)
    try:
        bench = Bench(
            args,
            running,
            conn,
            templates,
            Endpoint(HOST, port, WEBHOOK_PATH),
            workdir,
            itertools.count(),
        )
        phases = [
            await run_phase(bench, workers, index)
            for index, workers in enumerate(parse_workers(args.workers) or [])
        ]
        indexed = dict(await conn.fetchrow(INDEXED))
    finally:
        await conn.close()
    broken = any(p.drained.stored == 0 for p in phases)
    return Report(render_report(phases, args, len(templates), indexed), 1 if broken else 0)


async def run_drain_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        say("drain", problem)
        return 2
    try:
        templates = await asyncio.to_thread(corpus_templates, args.mix)
    except (OSError, InvalidDelivery, StartFailed) as exc:
        say("drain", f"the webhooks/ corpus could not be read: {exc}")
        return 2
    if not templates:
        say("drain", "the webhooks/ corpus has no deliveries of that mix")
        return 2
    sustained = (
        f"; then {args.rate:g}/s for {args.seconds:g} s with them running" if args.rate else ""
    )
    say(
        "drain",
        f"{args.deliveries} stored deliveries ({args.mix} mix, {len(templates)} corpus bodies, "
        f"each copy with its own ids) drained by {args.workers} worker(s){sustained}",
    )
    return await run_bench("drain", functools.partial(_run, args, templates))

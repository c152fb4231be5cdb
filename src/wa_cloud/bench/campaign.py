"""`wa-cloud bench campaign`: a campaign of N recipients on one number while conversations get
answers from the same number, written by people through the API and by the assistant.

The stack is `bench send`'s (embedded PostgreSQL, the sandbox Meta with its status webhooks
off, `wa-cloud serve --no-worker`) and `--workers` `wa-cloud worker` processes started after it
with the platform model at the sandbox's OpenAI-compatible fake (`OPENAI_BASE_URL`,
`WA_AI_MODEL=echo`: it answers at once with the customer's text). Only the workers run the
assistant, and the sandbox's address is known once `start_stack` has started it.

Seeding is `bench reply`'s: a tenant whose number runs at `--rate`, its assistant on with no
debounce (`PUT /v1/numbers/{id}/bot`) and credits for every reply it could write. A template
campaign to `--recipients` people is created through `POST /v1/broadcasts`, and while it runs,
every `--answer-every` seconds (each conversation staggered):

- each of `--conversations` customers gets an answer through `POST /v1/messages` (a person
  answering through the API: a template, so no window is needed);
- each of `--ai-conversations` other customers writes a text message, a signed Meta webhook
  posted to `POST /webhook` (the real receiver), and the assistant answers through the outbox.
  The sandbox is told each of them wrote (`/_sandbox/windows`), as Meta would know.

The two kinds are different customers: an API send pauses the assistant in its conversation for
`human_takeover_minutes`, so a customer answered through the API gets no AI reply afterwards.

Reported: the number's send rate over the campaign's steady part (everything the number sent:
campaign, API answers and AI replies; the number's rate within 2 %, the campaign's share the
rest), 130429s from the emulator (none allowed), the API answers' latency from the API call to
Meta's acceptance (`created_at` -> `accepted_at`) and the AI replies' from the webhook POST
(this process's wall clock, read just before the write) to the reply's `accepted_at`
(PostgreSQL's clock: this machine's wall clock too); p99 under 1 s for each. Every message
written must get one reply with its own text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

from wa_cloud.bench import reply
from wa_cloud.bench.harness import HOST, WEBHOOK_PATH, Report, progress, run_bench, say
from wa_cloud.bench.load import Endpoint, KeepAlive, build_requests
from wa_cloud.bench.send import (
    TARGET_DEVIATION,
    TEMPLATE_LANGUAGE,
    WABA_ID,
    PlannedNumber,
    Stack,
    Watch,
    _steady_bounds,
    checked,
    rate_between,
    seed_template,
    send_request,
    start_stack,
    watch_until_drained,
    worker_process,
)
from wa_cloud.bench.stats import percentile
from wa_cloud.db.pool import connect
from wa_cloud.sandbox.corpus import text_message
from wa_cloud.sandbox.models import ECHO

CAMPAIGN_TEMPLATE: Final = "bench_promo"
LATENCY_TARGET_SECONDS: Final = 1.0
# After the last message written: every reply is accepted within this, or counts as missing.
REPLY_WAIT: Final = 10.0
REPLY_POLL: Final = 0.25


# --- the stack ----------------------------------------------------------------------------------


async def _start(stack: contextlib.AsyncExitStack, workdir: Path, workers: int) -> Stack:
    """`bench send`'s stack with no worker, then the workers with the platform model at the
    sandbox's fake: its address exists only once the sandbox runs."""
    running = await start_stack(
        stack, workdir, "campaign", webhooks=False, workers=0, serve_worker=False
    )
    running.env = {
        **running.env,
        "OPENAI_BASE_URL": f"{running.sandbox}/openai/v1",
        "OPENAI_API_KEY": "sk-bench-" + secrets.token_urlsafe(12),
        "WA_AI_MODEL": ECHO,
    }
    progress("campaign", f"starting {workers} wa-cloud worker(s), model {ECHO} at the sandbox")
    running.pids["worker"] = [
        await stack.enter_async_context(worker_process(running.env, i, workdir))
        for i in range(workers)
    ]
    return running


# --- the conversations --------------------------------------------------------------------------


async def _answers(
    api: httpx.AsyncClient,
    key: str,
    number: str,
    customers: list[str],
    every: float,
    stop: asyncio.Event,
) -> int:
    """Each customer gets an answer every `every` seconds (staggered) until `stop`."""
    headers = {"authorization": f"Bearer {key}"}
    sent = 0

    async def one(customer: str) -> None:
        nonlocal sent
        await asyncio.sleep(random.uniform(0, every))
        while not stop.is_set():
            response = await api.post(
                "/v1/messages", json=send_request(number, customer), headers=headers
            )
            checked(response, "an answer", (202,))
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    await asyncio.gather(*(one(c) for c in customers))
    return sent


@dataclass(slots=True)
class Written:
    """One message a customer wrote to the assistant, and what came of it."""

    wamid: str
    at: float = 0.0  # time.time() just before the webhook was written
    status: int | None = None  # the webhook's answer; None: the connection failed
    queued_at: float | None = None  # the reply's created_at: the assistant queued it
    accepted_at: float | None = None  # the reply's accepted_at (epoch seconds)
    replies: int = 0  # reply messages accepted
    echoed: bool = False

    @property
    def latency(self) -> float | None:
        return None if self.accepted_at is None else self.accepted_at - self.at

    @property
    def to_queue(self) -> float | None:
        return None if self.queued_at is None else self.queued_at - self.at

    @property
    def in_queue(self) -> float | None:
        if self.queued_at is None or self.accepted_at is None:
            return None
        return self.accepted_at - self.queued_at


async def _writers(
    endpoint: Endpoint,
    app_secret: str,
    number: PlannedNumber,
    customers: list[str],
    every: float,
    stop: asyncio.Event,
) -> list[Written]:
    """Each customer writes to the number every `every` seconds (staggered) until `stop`: a
    signed webhook as Meta posts it."""
    written: list[Written] = []

    async def one(customer: str) -> None:
        await asyncio.sleep(random.uniform(0, every))
        index = 0
        while not stop.is_set():
            index += 1
            body = text_message(
                number.phone_number_id,
                customer,
                reply.MESSAGE.format(round=index, customer=customer),
                display_phone_number=number.display,
                waba_id=WABA_ID,
                name=f"Customer {customer[-4:]}",
            )
            (request,) = build_requests(endpoint, [body], app_secret)
            message = Written(reply._wamid(body))
            written.append(message)
            # Connected afresh each time, before the clock starts: the web process closes a
            # connection idle for 5 s (uvicorn's keep-alive timeout), shorter than the pause.
            connection = KeepAlive(endpoint.host, endpoint.port)
            try:
                if await connection.open():
                    message.at = time.time()
                    message.status = await connection.exchange(request)
            finally:
                connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    await asyncio.gather(*(one(c) for c in customers))
    return written


# Each written message's reply: the inbound row's reply job, the messages it sent.
REPLIES = """
SELECT mi.wamid,
       extract(epoch FROM min(mo.created_at)) AS queued_at,
       extract(epoch FROM min(mo.accepted_at)) AS accepted_at,
       count(mo.accepted_at) AS replies,
       coalesce(bool_and(mo.text = mi.text), false) AS echoed
  FROM messages mi
  LEFT JOIN messages mo ON mo.reply_id = mi.reply_id AND mo.direction = 'out'
 WHERE mi.direction = 'in' AND mi.wamid = ANY($1::text[])
 GROUP BY mi.wamid
"""


async def _read_replies(conn: asyncpg.Connection, written: list[Written]) -> None:
    """Wait (up to REPLY_WAIT) until every message answered 200 has its reply accepted; note
    each one's reply."""
    by_wamid = {w.wamid: w for w in written}
    awaited = sum(1 for w in written if w.status == 200)
    deadline = time.monotonic() + REPLY_WAIT
    while True:
        for row in await conn.fetch(REPLIES, list(by_wamid)):
            message = by_wamid[row["wamid"]]
            queued, accepted = row["queued_at"], row["accepted_at"]
            message.queued_at = None if queued is None else float(queued)
            message.accepted_at = None if accepted is None else float(accepted)
            message.replies = int(row["replies"])
            message.echoed = bool(row["echoed"])
        answered = sum(1 for w in written if w.accepted_at is not None)
        if answered >= awaited or time.monotonic() > deadline:
            return
        await asyncio.sleep(REPLY_POLL)


def _problems(written: list[Written]) -> list[str]:
    found = []
    refused = sum(1 for w in written if w.status != 200)
    if refused:
        found.append(f"{refused} webhook(s) not answered 200")
    missing = sum(1 for w in written if w.status == 200 and w.replies == 0)
    if missing:
        found.append(f"{missing} message(s) with no reply accepted")
    twice = sum(1 for w in written if w.replies > 1)
    if twice:
        found.append(f"{twice} message(s) answered more than once")
    wrong = sum(1 for w in written if w.replies and not w.echoed)
    if wrong:
        found.append(f"{wrong} reply(ies) not the customer's own text")
    return found


# --- the run ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    watch: Watch
    shown: dict[str, Any]
    answered: int  # API answers posted
    written: list[Written] = field(default_factory=list)


def _replies_bound(args: argparse.Namespace) -> int:
    """At most how many messages the AI conversations write: for the campaign's time limit."""
    per_conversation = _campaign_limit(args) / args.answer_every + 2
    return int(args.ai_conversations * per_conversation)


def _campaign_limit(args: argparse.Namespace) -> float:
    return float(args.recipients / args.rate * 2 + 60)


async def _measure(args: argparse.Namespace, stack: Stack) -> list[str]:
    number = PlannedNumber(
        "106540359000001", "15559000001", "EAAG-bench-campaign", args.rate, args.recipients
    )
    progress("campaign", "seeding a tenant, its number with the assistant on (debounce 0)")
    tenant = await reply.seed(stack, [number], _replies_bound(args))
    endpoint = Endpoint(HOST, int(stack.api.rsplit(":", 1)[1]), WEBHOOK_PATH)
    async with stack.clients() as (api, sandbox):
        await seed_template(sandbox, WABA_ID)
        promo = {
            "waba_id": WABA_ID,
            "name": CAMPAIGN_TEMPLATE,
            "language": TEMPLATE_LANGUAGE,
            "body": "Hi {{1}}, this week's offer is yours.",
            "category": "MARKETING",
        }
        checked(await sandbox.post("/_sandbox/templates", json=promo), "campaign template")
        writers = [f"44771{i:07d}" for i in range(args.ai_conversations)]
        for customer in writers:  # Meta knows they write: its window opens
            window = {"phone_number_id": number.phone_number_id, "user": customer}
            checked(await sandbox.post("/_sandbox/windows", json=window), "sandbox window")
        conn = await connect(stack.database_url)
        try:
            # The limit is not what this measures: the number may reach every recipient today.
            await conn.execute("UPDATE numbers SET messaging_limit = 'TIER_UNLIMITED'")
            headers = {"authorization": f"Bearer {tenant.api_key}"}
            progress("campaign", f"creating the campaign to {args.recipients} recipients")
            created = checked(
                await api.post(
                    "/v1/broadcasts",
                    json={
                        "from": number.phone_number_id,
                        "name": "Bench",
                        "template": {
                            "name": CAMPAIGN_TEMPLATE,
                            "language": {"code": TEMPLATE_LANGUAGE},
                        },
                        "recipients": [
                            {"to": f"+34 6{i:08d}", "variables": [f"N{i}"]}
                            for i in range(args.recipients)
                        ],
                    },
                    headers=headers,
                ),
                "POST /v1/broadcasts",
            )
            customers = [f"44770{i:07d}" for i in range(args.conversations)]
            stop = asyncio.Event()
            answering = asyncio.create_task(
                _answers(
                    api, tenant.api_key, number.phone_number_id, customers, args.answer_every, stop
                )
            )
            writing = asyncio.create_task(
                _writers(endpoint, stack.app_secret, number, writers, args.answer_every, stop)
            )
            progress("campaign", "sending; the conversations are answered meanwhile")
            watch = await watch_until_drained(
                sandbox, conn, args.recipients + 10**9, _campaign_limit(args)
            )
            stop.set()
            answered = await answering
            written = await writing
            progress("campaign", "campaign sent; waiting for the last replies")
            await _read_replies(conn, written)
            await watch_until_drained(sandbox, conn, 10**9, 30)
            shown = checked(
                await api.get(f"/v1/broadcasts/{created['id']}", headers=headers), "progress"
            )
            outcome = Outcome(watch, shown, answered, written)
            return await _report(args, conn, number, outcome)
        finally:
            await conn.close()


# --- the report ---------------------------------------------------------------------------------


def _latencies(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    ordered = sorted(seconds)
    p50, p99 = percentile(ordered, 0.5), percentile(ordered, 0.99)
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"


def _p99_met(seconds: list[float]) -> bool:
    return bool(seconds) and percentile(sorted(seconds), 0.99) < LATENCY_TARGET_SECONDS


# What the number sent besides the campaign inside [low, high]: API answers, AI replies.
SHARES = """
SELECT count(*) FILTER (WHERE author IS DISTINCT FROM 'bot') AS api,
       count(*) FILTER (WHERE author = 'bot') AS ai
  FROM messages
 WHERE direction = 'out' AND broadcast_id IS NULL
   AND accepted_at BETWEEN to_timestamp($1) AND to_timestamp($2)
"""


async def _report(
    args: argparse.Namespace, conn: asyncpg.Connection, number: PlannedNumber, outcome: Outcome
) -> list[str]:
    first, last = await conn.fetchrow(
        "SELECT extract(epoch FROM min(accepted_at)), extract(epoch FROM max(accepted_at))"
        " FROM messages WHERE broadcast_id IS NOT NULL"
    )
    low, high = _steady_bounds(float(first), float(last))
    rate = rate_between(outcome.watch.samples, number.phone_number_id, low, high)
    answers = sorted(
        float(r[0])
        for r in await conn.fetch(
            "SELECT extract(epoch FROM accepted_at - created_at) FROM messages"
            " WHERE direction = 'out' AND broadcast_id IS NULL AND author IS DISTINCT FROM 'bot'"
            " AND accepted_at IS NOT NULL"
        )
    )
    replies = sorted(w.latency for w in outcome.written if w.latency is not None)
    shares = await conn.fetchrow(SHARES, low, high)
    span = high - low
    api_share = shares["api"] / span if span > 0 else 0.0
    ai_share = shares["ai"] / span if span > 0 else 0.0
    stats = outcome.watch.last.get(number.phone_number_id, {})
    rejected = int(stats.get("throughput_rejected", 0))
    deviation = None if rate is None else rate / args.rate - 1
    rate_ok = deviation is not None and abs(deviation) <= TARGET_DEVIATION
    counts, shown = outcome.shown["counts"], outcome.shown
    campaign_rate = 0.0 if rate is None else rate - api_share - ai_share
    reached = counts["sent"] + counts["delivered"] + counts["read"]
    problems = _problems(outcome.written)
    answered_200 = sum(1 for w in outcome.written if w.status == 200)
    lines = [
        f"campaign: {args.recipients} recipients on one {args.rate}/s number; every "
        f"{args.answer_every:g} s, {args.conversations} conversations answered through the API "
        f"and {args.ai_conversations} writing to the assistant (model {ECHO}, debounce 0)",
        f"  campaign sends accepted: {reached} of {counts['total']} "
        f"(failed {counts['failed']}, skipped {counts['skipped']}), status {shown['status']}",
        "  number's rate over the campaign's steady part: "
        + ("-" if rate is None else f"{rate:.2f}/s ({deviation:+.2%} of {args.rate}/s)")
        + f"; API answers' share {api_share:.2f}/s, AI replies' {ai_share:.2f}/s, "
        f"campaign {campaign_rate:.2f}/s",
        f"  130429 from the emulator: {rejected}",
        f"  API answers: {len(answers)} of {outcome.answered} accepted; API call -> Meta "
        f"accepted {_latencies(answers)}",
        f"  AI replies: {len(replies)} of {len(outcome.written)} messages written "
        f"({answered_200} webhooks answered 200); webhook POST -> Meta accepted "
        f"{_latencies(replies)}",
        "    of which webhook POST -> reply queued (its created_at) "
        + _latencies([t for w in outcome.written if (t := w.to_queue) is not None])
        + "; queued -> Meta accepted "
        + _latencies([t for w in outcome.written if (t := w.in_queue) is not None]),
        *(f"  PROBLEM {p}" for p in problems),
        f"target rate within {TARGET_DEVIATION:.0%}: {verdict(rate_ok and not rejected)}",
    ]
    target = f"p99 < {LATENCY_TARGET_SECONDS * 1000:.0f} ms"
    if args.conversations:
        lines.append(f"target API answer {target}: {verdict(_p99_met(answers))}")
    if args.ai_conversations:
        lines.append(f"target AI reply {target}: {verdict(_p99_met(replies) and not problems)}")
    return lines


def verdict(held: bool) -> str:
    return "MET" if held else "NOT MET"


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, workdir: Path) -> Report:
    running = await _start(stack, workdir, args.workers)
    lines = await _measure(args, running)
    return Report(lines, 0 if all("NOT MET" not in line for line in lines) else 1)


def _check_args(args: argparse.Namespace) -> str | None:
    if args.recipients < 100 or not 1 <= args.rate <= 1000:
        return "--recipients at least 100, --rate 1 to 1000 (Meta's range)"
    if args.conversations < 0 or args.ai_conversations < 0 or args.answer_every <= 0:
        return "--conversations and --ai-conversations not negative, --answer-every positive"
    if args.workers < 1:
        return "--workers at least 1 (the workers send, and run the assistant)"
    return None


async def run_campaign_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        say("campaign", problem)
        return 2
    say(
        "campaign",
        f"{args.recipients} recipients at {args.rate}/s, {args.conversations} conversations "
        f"answered through the API, {args.ai_conversations} by the assistant; "
        f"{reply.deployment(args.workers)}",
    )
    started = time.monotonic()
    code = await run_bench("campaign", functools.partial(_run, args))
    say("campaign", f"took {time.monotonic() - started:.0f} s")
    return code
